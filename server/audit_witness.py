"""``telemed audit witness``: an independent co-signer of audit checkpoints (records.audit.witness).

* ``telemed audit witness init --dir D --audit-public-key FILE``: make the witness key (mode
  600) and store in D, pin the audit public key; prints the witness public key file to give
  to verifiers.
* ``telemed audit witness run --dir D --server URL --token-file FILE [--once | --interval S]``:
  each round fetches ``GET /api/v1/audit/checkpoints/latest``, asks
  ``GET /api/v1/audit/consistency`` for the proof from the last co-signed size, checks it and
  co-signs. Exit 0: co-signed or nothing new; 1: refused (rollback, fork, wrong key) —
  nothing co-signed; 2: could not ask the server (network, token, answer) or use the store.
  The loop stops at the first refusal and keeps trying after errors.

The witness needs nothing from this server's configuration: no database, no settings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console

from records.audit.checkpoint import Checkpoint, audit_key_id
from records.audit.witness import WitnessRefused, WitnessResult, WitnessStore, witness_round
from records.errors import RecordsError

__all__ = ["HttpClient", "WitnessUnavailable", "run_round", "witness_cli"]

API = "/api/v1/audit"
EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 2

witness_cli = typer.Typer(
    help="An independent witness that co-signs audit checkpoints and refuses rollbacks and forks.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


class HttpClient(Protocol):
    """What a round needs of an HTTP client (``httpx.Client`` with a base URL; a test client)."""

    def get(self, url: str, *, params: Any = ..., headers: Any = ...) -> Any:
        """GET ``url`` relative to the client's base URL."""


class WitnessUnavailable(Exception):
    """The server could not be asked (network, token, unexpected answer); try again later."""


def _get(http: HttpClient, token: str, path: str, params: dict[str, int] | None = None) -> Any:
    try:
        resp = http.get(API + path, params=params, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise WitnessUnavailable(f"Cannot reach the server ({type(exc).__name__})") from None
    if resp.status_code != 200:
        code = ""
        if resp.headers.get("content-type", "").startswith("application/problem+json"):
            code = f" ({resp.json().get('code', '')})"
        raise WitnessUnavailable(f"GET {API}{path} answered HTTP {resp.status_code}{code}")
    try:
        return resp.json()
    except ValueError:
        raise WitnessUnavailable(f"GET {API}{path} did not answer JSON") from None


def run_round(*, http: HttpClient, token: str, store: WitnessStore) -> WitnessResult:
    """One round against the server ``http`` points at; raises WitnessRefused or WitnessUnavailable."""
    body = _get(http, token, "/checkpoints/latest")
    try:
        checkpoint = None if body is None else Checkpoint.model_validate(body)
    except ValidationError:
        raise WitnessUnavailable("The server's checkpoint does not parse") from None

    def proof(first: int, second: int) -> Sequence[str]:
        answer = _get(http, token, "/consistency", {"first": first, "second": second})
        found = answer.get("proof") if isinstance(answer, dict) else None
        if not isinstance(found, list) or not all(isinstance(p, str) for p in found):
            raise WitnessUnavailable("The server's consistency proof does not parse")
        return found

    return witness_round(store=store, checkpoint=checkpoint, proof_source=proof)


@witness_cli.command("init")
def init(
    directory: Path = typer.Option(..., "--dir", help="The witness's own directory (on another host)."),
    audit_public_key: Path = typer.Option(
        ...,
        "--audit-public-key",
        exists=True,
        dir_okay=False,
        readable=True,
        help="The pinned audit checkpoint public key (PEM, from `telemed audit public-key`).",
    ),
) -> None:
    """Create the witness key and store, pinning the audit public key."""
    store = WitnessStore(directory)
    try:
        public = store.init(audit_public_key.read_bytes())
    except RecordsError as exc:
        err_console.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    console.print(f"Witness key {audit_key_id(public)}; give {store.public_key_file} to verifiers.")


def _read_token(token_file: Path) -> str:
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError:
        raise WitnessUnavailable(f"Cannot read the token file {token_file.name}") from None
    if not token:
        raise WitnessUnavailable(f"The token file {token_file.name} is empty")
    return token


def _round(server: str, token_file: Path, store: WitnessStore) -> int:
    try:
        token = _read_token(token_file)
        with httpx.Client(base_url=server.rstrip("/"), timeout=30.0) as http:
            result = run_round(http=http, token=token, store=store)
    except WitnessRefused as exc:
        err_console.print(f"[red]REFUSED:[/red] {exc.message}. Nothing was co-signed.")
        return EXIT_REFUSED
    except (WitnessUnavailable, RecordsError) as exc:
        err_console.print(f"[yellow]unavailable:[/yellow] {exc}")
        return EXIT_UNAVAILABLE
    if result.outcome == "cosigned":
        console.print(f"Co-signed the checkpoint at tree size {result.tree_size}.")
    else:
        console.print(f"No new checkpoint (last co-signed tree size {result.tree_size}).")
    return 0


@witness_cli.command("run")
def run(
    directory: Path = typer.Option(..., "--dir", help="The witness directory made by `witness init`."),
    server: str = typer.Option(..., "--server", help="The server's base URL, e.g. https://telemed.example"),
    token_file: Path = typer.Option(
        ..., "--token-file", help="A file holding an admin access token; read again every round."
    ),
    once: bool = typer.Option(False, "--once", help="One round, then exit (for cron and tests)."),
    interval: float = typer.Option(60.0, "--interval", min=1.0, help="Seconds between rounds."),
) -> None:
    """Co-sign each new checkpoint that extends the last one; refuse rollbacks and forks."""
    store = WitnessStore(directory)
    while True:
        code = _round(server, token_file, store)
        if once or code == EXIT_REFUSED:
            raise typer.Exit(code)
        time.sleep(interval)
