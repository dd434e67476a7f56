"""``telemed-client console``: start the laptop agent and open the clinician's console.

::

    telemed-client console --server https://telemed.example.org --device-id laptop-hmp-01
    telemed-client console --server http://127.0.0.1:8000 --device-id laptop-demo-01 \\
        --key-file demo-laptop.pem --simulate compliant --no-browser

It binds 127.0.0.1 only (a free port unless ``--port``), then opens the system browser at a
one-time launch URL — or prints it with ``--no-browser``: ``Console: http://127.0.0.1:PORT/launch/CODE``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import webbrowser
from pathlib import Path

import typer
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.console.app import STATIC_DIR, create_console_app
from clinic_client.console.guard import Gate
from clinic_client.console.session import ConsoleAgent
from clinic_client.posture import CollectorSource, FactSource, SimulatedSource
from device_policy.errors import DevicePolicyError
from device_policy.keys import load_private_key
from device_policy.simulated import PROFILES

EXIT_USAGE = 2
LAUNCH_LINE_PREFIX = "Console: "


def bind_localhost(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` 0: any free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def console(
    server: str = typer.Option(
        ..., envvar="TELEMED_SERVER", help="The telemed server, e.g. https://telemed.example.org."
    ),
    device_id: str = typer.Option(..., envvar="TELEMED_DEVICE_ID", help="This laptop's device id."),
    key_file: Path = typer.Option(
        Path("~/.config/telemed/device-key.pem"), envvar="TELEMED_DEVICE_KEY_FILE", help="The device key."
    ),
    port: int = typer.Option(0, min=0, max=65535, help="The local port (0: a free one)."),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the launch URL instead of opening it."
    ),
    simulate: str | None = typer.Option(
        None, help=f"Development servers only: a simulated posture profile ({', '.join(PROFILES)})."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the agent does."),
) -> None:
    """Start the laptop agent and open the clinician's console in the browser."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        key = load_private_key(key_file.expanduser())
    except (OSError, DevicePolicyError) as exc:
        typer.echo(f"Cannot use the device key {key_file}: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if simulate is not None and simulate not in PROFILES:
        typer.echo(f"Unknown profile {simulate!r}; one of {', '.join(PROFILES)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    source: FactSource = SimulatedSource(simulate) if simulate else CollectorSource()
    try:
        sock = bind_localhost(port)
    except OSError as exc:
        typer.echo(f"Cannot listen on 127.0.0.1:{port}: {exc.strerror}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    gate = Gate(sock.getsockname()[1])
    asyncio.run(_serve(server, device_id, key, source, gate, sock, open_browser=not no_browser))


async def _serve(
    server: str,
    device_id: str,
    key: Ed25519PrivateKey,
    source: FactSource,
    gate: Gate,
    sock: socket.socket,
    *,
    open_browser: bool,
) -> None:
    agent = ConsoleAgent(server_url=server, device_id=device_id, private_key=key, source=source)
    app = create_console_app(agent, gate, static_dir=STATIC_DIR)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws_max_size=2**20)
    uvicorn_server = uvicorn.Server(config)
    if open_browser:
        if not webbrowser.open(gate.launch_url):
            typer.echo(f"{LAUNCH_LINE_PREFIX}{gate.launch_url}")
    else:
        typer.echo(f"{LAUNCH_LINE_PREFIX}{gate.launch_url}")
    await uvicorn_server.serve(sockets=[sock])
