"""``telemed-client room --kiosk``: the room endpoint's agent with its full-screen page.

::

    telemed-client room --kiosk --server https://telemed.example.org --device-id room-hmp-01
    telemed-client room --kiosk --server http://127.0.0.1:8000 --device-id room-demo-01 \\
        --key-file demo-room.pem --posture-source simulated:compliant --no-browser

It binds 127.0.0.1 only (a free port unless ``--port``), then starts Chromium in kiosk mode on
a one-time launch URL — or prints it with ``--no-browser`` (or when no browser is found):
``Room screen: http://127.0.0.1:PORT/launch/CODE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import typer
import uvicorn

from clinic_client.console.cli import bind_localhost
from clinic_client.console.guard import Gate
from clinic_client.room.agent import RoomAgent
from clinic_client.room.app import create_room_app, room_gate
from clinic_client.room.browser import KioskBrowser, find_browser
from clinic_client.signalling import PostureSource

EXIT_OK = 0
EXIT_USAGE = 2
LAUNCH_LINE_PREFIX = "Room screen: "


def serve_room_screen(
    *,
    server: str,
    posture: PostureSource,
    port: int = 0,
    open_browser: bool = True,
    browser: str | None = None,
    poll_s: float = 30.0,
) -> int:
    """Run the agent and its page until interrupted; the exit code."""
    try:
        sock = bind_localhost(port)
    except OSError as exc:
        typer.echo(f"Cannot listen on 127.0.0.1:{port}: {exc.strerror}", err=True)
        return EXIT_USAGE
    binary = find_browser(browser) if open_browser else None
    if open_browser and binary is None:
        typer.echo(f"No browser found ({browser or 'chromium'}); open the launch URL yourself.", err=True)
    gate = room_gate(sock.getsockname()[1])
    agent = RoomAgent(server_url=server, posture=posture, poll_s=poll_s)
    asyncio.run(_serve(agent, gate, sock, binary))
    return EXIT_OK


async def _serve(agent: RoomAgent, gate: Gate, sock: socket.socket, binary: str | None) -> None:
    app = create_room_app(agent, gate)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws_max_size=2**20)
    uvicorn_server = uvicorn.Server(config)

    async def open_when_serving(browser: KioskBrowser) -> None:
        while not uvicorn_server.started:
            await asyncio.sleep(0.05)
        await browser.run()

    kiosk: asyncio.Task[None] | None = None
    if binary is not None:
        kiosk = asyncio.create_task(open_when_serving(KioskBrowser(binary, gate)), name="kiosk-browser")
    else:
        typer.echo(f"{LAUNCH_LINE_PREFIX}{gate.launch_url}")
    try:
        await uvicorn_server.serve(sockets=[sock])
    finally:
        if kiosk is not None:
            kiosk.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kiosk
