"""``telemed-device``: this device's key, its posture facts, and a compliance check against a server.

::

    telemed-device enrol --id laptop-01 --kind prison_laptop      # key pair + what the admin needs
    telemed-device facts                                           # what the collectors see here
    telemed-device parse mmcli-modem saved-output.txt              # one saved tool output, as JSON
    telemed-device check --server https://telemed.example.org --device-id laptop-01

Exit codes of ``check``: 0 compliant, 1 not compliant (policy failed), 2 usage or local
error (key file, options), 3 the server refused the attestation for another reason
(unknown or revoked device, bad signature, simulated facts on a production server…),
4 the server could not be reached or did not answer as the telemed API.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clinic_client.posture import (
    CollectorSource,
    FactSource,
    FailedRule,
    PostureAgent,
    PostureCheckFailed,
    PostureError,
    PostureRefused,
    PostureResult,
    SimulatedSource,
)
from device_policy.collectors import (
    CollectorError,
    LocalFiles,
    SubprocessRunner,
    describe_kinds,
    parse,
    platform_name,
)
from device_policy.errors import DevicePolicyError
from device_policy.facts import Fact, FactSet, JsonValue
from device_policy.keys import (
    generate_device_key,
    key_thumbprint,
    load_private_key,
    public_key_b64,
    save_private_key,
)
from device_policy.policy import DeviceKind, PolicyResult, RuleResult
from device_policy.simulated import PROFILES, SimulatedProfile

EXIT_COMPLIANT = 0
EXIT_NON_COMPLIANT = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4

KEY_FILE_ENV = "TELEMED_DEVICE_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/telemed/device-key.pem")

app = typer.Typer(
    help="telemed-device: the device key, posture facts and compliance check of this machine.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

_KEY_FILE_OPTION = typer.Option(
    None, "--key-file", envvar=KEY_FILE_ENV, help=f"Device private key (default {DEFAULT_KEY_FILE})."
)
_SIMULATE_HELP = f"Use a simulated profile instead of the collectors: {', '.join(PROFILES)}."


def _key_path(key_file: Path | None) -> Path:
    return (key_file or DEFAULT_KEY_FILE).expanduser()


def _profile(name: str | None) -> SimulatedProfile | None:
    if name is None:
        return None
    try:
        return SimulatedProfile(name)
    except ValueError:
        err_console.print(f"[red]Unknown profile {name!r}[/red]; choose one of {', '.join(PROFILES)}")
        raise typer.Exit(EXIT_USAGE) from None


# --- enrol -------------------------------------------------------------------------------


@app.command()
def enrol(
    device_id: str = typer.Option(..., "--id", help="The device id the admin will enrol."),
    kind: DeviceKind = typer.Option(..., help="prison_laptop or room_endpoint."),
    key_file: Path | None = _KEY_FILE_OPTION,
    force: bool = typer.Option(
        False, "--force", help="Replace an existing key file (the old key stops working)."
    ),
    simulate: bool = typer.Option(
        False, "--simulate", help="Show the simulator's modem and SIM identifiers (development)."
    ),
) -> None:
    """Create this device's Ed25519 key pair and print what the admin needs to enrol it."""
    path = _key_path(key_file)
    if path.exists() and not force:
        err_console.print(
            f"[red]{path} already exists[/red]; pass --force to replace it (the old key stops working)"
        )
        raise typer.Exit(EXIT_USAGE)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = generate_device_key()
    save_private_key(path, key, overwrite=force)
    public = public_key_b64(key.public_key())
    ids = _simulated_ids() if simulate else asyncio.run(_modem_ids())
    machine = _machine_identity()

    console.print(f"Private key written to [bold]{path}[/bold] (mode 600). Keep it on this device only.")
    table = Table(show_header=False, box=None)
    table.add_row("device id", device_id)
    table.add_row("kind", kind.value)
    table.add_row("public key", public)
    table.add_row("thumbprint", key_thumbprint(key.public_key()))
    for label, value in (*machine.items(), *ids.items()):
        table.add_row(label, value or "[dim](not readable here)[/dim]")
    console.print(table)
    command = [
        "telemed device enrol",
        device_id,
        f"--kind {kind.value}",
        f"--public-key {public}",
        f"--serial {_quote(machine.get('serial') or '<serial>')}",
        f"--model {_quote(machine.get('model') or '<model>')}",
    ]
    if kind is DeviceKind.PRISON_LAPTOP:
        command += [f"--{name} {value or '<' + name + '>'}" for name, value in ids.items()]
    console.print("\nGive the admin this line (fill in anything in <>):")
    console.print(" ".join(command), soft_wrap=True, highlight=False, markup=False)


def _quote(text: str) -> str:
    return f"'{text}'" if " " in text else text


def _simulated_ids() -> dict[str, str | None]:
    from device_policy.policy import EnrolledIdentity
    from device_policy.simulated import simulated_facts

    facts = simulated_facts(
        SimulatedProfile.COMPLIANT,
        enrolled=EnrolledIdentity(device_id="simulated", device_kind=DeviceKind.PRISON_LAPTOP),
    )
    return {name: _str(facts[fact].value) for name, fact in _ID_FACTS.items()}


_ID_FACTS = {"imei": "modem.imei", "iccid": "sim.iccid", "imsi": "sim.imsi"}


async def _modem_ids() -> dict[str, str | None]:
    # Only the modem collector: enrolment needs the identifiers, not a full posture run.
    platform = platform_name()
    runner = SubprocessRunner()
    if platform == "windows":
        from device_policy.collectors.windows.modem import collect_modem
    else:
        from device_policy.collectors.linux.modem import collect_modem
    facts = {fact.name: fact for fact in await collect_modem(runner)}
    return {name: _known(facts.get(fact)) for name, fact in _ID_FACTS.items()}


def _known(fact: Fact | None) -> str | None:
    if fact is None or fact.status == "unknown":
        return None
    return _str(fact.value)


def _str(value: JsonValue) -> str | None:
    return value if isinstance(value, str) and value else None


def _machine_identity() -> dict[str, str | None]:
    files = LocalFiles()
    found: dict[str, str | None] = {}
    for label, path in (
        ("serial", "/sys/class/dmi/id/product_serial"),
        ("model", "/sys/class/dmi/id/product_name"),
    ):
        try:
            found[label] = files.read_bytes(path).decode("utf-8", "replace").strip() or None
        except OSError:
            found[label] = None  # product_serial is root-only on most systems
    return found


# --- parse -------------------------------------------------------------------------------


@app.command("parse")
def parse_command(
    kind: str = typer.Argument(..., help="What produced the file (see `telemed-device kinds`)."),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Saved output."),
) -> None:
    """Print, as JSON, what the collector's parser finds in one saved command output."""
    try:
        found = parse(kind, file.read_bytes())
    except CollectorError as exc:
        err_console.print(f"[red]{exc.code}:[/red] {exc.detail}")
        raise typer.Exit(EXIT_USAGE if exc.code == "unknown_collector" else EXIT_NON_COMPLIANT) from None
    typer.echo(json.dumps(found, indent=2, sort_keys=True, ensure_ascii=False))


@app.command()
def kinds() -> None:
    """List the kinds `parse` understands and the command each one reads."""
    table = Table("kind", "output of")
    for kind, command in describe_kinds().items():
        table.add_row(kind, command)
    console.print(table)


# --- facts -------------------------------------------------------------------------------


@app.command()
def facts(
    simulate: str | None = typer.Option(None, "--simulate", metavar="PROFILE", help=_SIMULATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Collect and print this machine's posture facts (nothing is sent anywhere)."""
    profile = _profile(simulate)
    source: FactSource = SimulatedSource(profile) if profile else _collector_source()
    platform, found = asyncio.run(source.collect(device_id="local", device_kind=DeviceKind.PRISON_LAPTOP))
    if as_json:
        typer.echo(
            json.dumps({"platform": platform.value, "facts": _facts_json(found)}, indent=2, sort_keys=True)
        )
        return
    table = Table("fact", "status", "value", "detail", title=f"Posture facts ({platform.value})")
    styles = {"pass": "green", "fail": "red", "unknown": "yellow"}
    for name in sorted(found):
        fact = found[name]
        table.add_row(
            name,
            Text(fact.status.value, style=styles.get(fact.status.value, "")),
            _display(fact.value),
            fact.detail or "",
        )
    console.print(table)


def _collector_source() -> CollectorSource:
    try:
        return CollectorSource()
    except DevicePolicyError as exc:
        err_console.print(f"[red]{exc.code}:[/red] {exc.detail}")
        raise typer.Exit(EXIT_USAGE) from None


def _facts_json(found: FactSet) -> dict[str, Any]:
    return {name: fact.model_dump(mode="json", exclude={"name"}) for name, fact in sorted(found.items())}


def _display(value: JsonValue) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


# --- check -------------------------------------------------------------------------------


@app.command()
def check(
    server: str = typer.Option(
        ..., "--server", envvar="TELEMED_SERVER", help="Server URL, e.g. https://telemed.example.org."
    ),
    device_id: str = typer.Option(
        ..., "--device-id", envvar="TELEMED_DEVICE_ID", help="This device's enrolled id."
    ),
    key_file: Path | None = _KEY_FILE_OPTION,
    simulate: str | None = typer.Option(None, "--simulate", metavar="PROFILE", help=_SIMULATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    timeout: float = typer.Option(30.0, min=1.0, help="Seconds to wait for the server."),
) -> None:
    """Run the whole posture check against a server; show each rule, passed or failed, with the fix."""
    profile = _profile(simulate)
    try:
        key = load_private_key(_key_path(key_file))
    except FileNotFoundError:
        err_console.print(
            f"[red]No key file at {_key_path(key_file)}[/red]; run `telemed-device enrol` first"
        )
        raise typer.Exit(EXIT_USAGE) from None
    except DevicePolicyError as exc:
        err_console.print(f"[red]{exc.code}:[/red] {exc.detail}")
        raise typer.Exit(EXIT_USAGE) from None
    source: FactSource = SimulatedSource(profile) if profile else _collector_source()

    async def run() -> PostureResult:
        async with PostureAgent(
            server_url=server, device_id=device_id, private_key=key, source=source, timeout=timeout
        ) as agent:
            return await agent.attest()

    try:
        result = asyncio.run(run())
    except PostureCheckFailed as failed:
        _report_failure(failed, server=server, device_id=device_id, as_json=as_json)
        raise typer.Exit(EXIT_NON_COMPLIANT) from None
    except PostureRefused as refused:
        _report_error(refused, server=server, device_id=device_id, as_json=as_json)
        raise typer.Exit(EXIT_REFUSED) from None
    except PostureError as error:
        _report_error(error, server=server, device_id=device_id, as_json=as_json)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    _report_pass(result, server=server, device_id=device_id, as_json=as_json)


def _rule_json(rule: RuleResult) -> dict[str, Any]:
    return {
        "id": rule.rule_id,
        "title": rule.title,
        "severity": rule.severity.value,
        "outcome": rule.outcome.value,
        "actual": rule.actual,
        "remediation": rule.remediation,
    }


def _failed_json(rule: FailedRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "title": rule.title,
        "severity": rule.severity,
        "outcome": rule.outcome,
        "actual": rule.actual,
        "remediation": rule.remediation,
    }


def _report_pass(result: PostureResult, *, server: str, device_id: str, as_json: bool) -> None:
    if as_json:
        out = {
            "device_id": device_id,
            "server": server,
            "compliant": True,
            "policy_version": result.policy_version,
            "policy_hash": result.policy_hash,
            "token_jti": result.jti,
            "expires_at": result.expires_at.astimezone(UTC).isoformat(),
            "results": [_rule_json(r) for r in result.report.results],
            "failed_rules": [],
            "warnings": [_failed_json(w) for w in result.warnings],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    _print_results(result.report, device_id=device_id, server=server)
    left = int(result.expires_in(datetime.now(UTC)).total_seconds())
    console.print(
        f"[bold green]COMPLIANT[/bold green] — posture token {result.jti} valid for "
        f"{left // 60} min {left % 60} s (policy {result.policy_version})."
    )


def _report_failure(failed: PostureCheckFailed, *, server: str, device_id: str, as_json: bool) -> None:
    if as_json:
        out = {
            "device_id": device_id,
            "server": server,
            "compliant": False,
            "policy_version": failed.report.policy_version if failed.report else None,
            "policy_hash": failed.report.policy_hash if failed.report else None,
            "results": [_rule_json(r) for r in failed.report.results] if failed.report else [],
            "failed_rules": [_failed_json(r) for r in failed.failed_rules],
            "warnings": [_failed_json(w) for w in failed.warnings],
            "error": {"code": failed.code, "detail": failed.detail, "status": failed.status},
        }
        typer.echo(json.dumps(out, indent=2))
        return
    if failed.report is not None:
        _print_results(failed.report, device_id=device_id, server=server)
    console.print(f"[bold red]NOT COMPLIANT[/bold red] — {len(failed.failed_rules)} rule(s) must be fixed:")
    for rule in failed.failed_rules:
        console.print(Text.assemble("  ✘ ", (rule.title, "bold"), f" ({rule.id})"), soft_wrap=True)
        console.print(Text(f"    → {rule.remediation or 'No remediation given; call IT.'}"), soft_wrap=True)
    console.print("Fix these, then run the check again.")


def _report_error(error: PostureError, *, server: str, device_id: str, as_json: bool) -> None:
    if as_json:
        out = {
            "device_id": device_id,
            "server": server,
            "compliant": False,
            "error": {"code": error.code, "detail": error.detail, "status": error.status},
        }
        typer.echo(json.dumps(out, indent=2))
        return
    if isinstance(error, PostureRefused):
        err_console.print(
            f"[red]The server refused the check[/red] ({error.code}): {error.detail}", soft_wrap=True
        )
    else:
        err_console.print(
            f"[red]Could not complete the check[/red] ({error.code}): {error.detail}", soft_wrap=True
        )


def _print_results(report: PolicyResult, *, device_id: str, server: str) -> None:
    table = Table(
        "",
        "rule",
        "seen",
        "severity",
        title=f"Posture of {device_id} — policy {report.policy_version} at {server}",
    )
    marks = {"pass": ("✔", "green"), "fail": ("✘", "red"), "unknown": ("?", "yellow")}
    for rule in report.results:
        mark, style = marks[rule.outcome.value]
        table.add_row(
            Text(mark, style=style),
            f"{rule.title} ({rule.rule_id})",
            _display(rule.actual),
            rule.severity.value,
        )
    console.print(table)
    warnings = [r for r in report.results if r.outcome.value != "pass" and r.severity.value == "warn"]
    for rule in warnings:
        console.print(Text(f"  ! {rule.title}: {rule.remediation}", style="yellow"), soft_wrap=True)


def main() -> None:
    """Entry point of the ``telemed-device`` console script."""
    app()


if __name__ == "__main__":
    main()
