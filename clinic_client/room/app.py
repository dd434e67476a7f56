"""The room screen agent's web app: the console agent's guard, launch route and static files,
the room page, the console's WebRTC module it shares, and the state and signalling routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from starlette.responses import Response

from clinic_client.console.app import STATIC_DIR as CONSOLE_STATIC_DIR
from clinic_client.console.app import agent_app, static_file
from clinic_client.console.errors import ConsoleError
from clinic_client.console.guard import Gate
from clinic_client.room.agent import RoomAgent
from clinic_client.room.link import RoomLink

STATIC_DIR = Path(__file__).parent / "static"
COOKIE_NAME = "telemed_room"
NOT_CONNECTED_WORDS = "This screen is not connected. Please tell a member of staff."
# The console's modules the room page imports (peer.js and its imports, format.js), nothing else.
SHARED_MODULES = frozenset({"js/peer.js", "js/app.js", "js/quality.js", "js/screens.js", "js/format.js"})

router = APIRouter(prefix="/api")


def room_gate(port: int, *, launch_code: str | None = None) -> Gate:
    """The guard's gate for the room screen: its own cookie, and words for a patient's room."""
    return Gate(
        port, launch_code=launch_code, cookie_name=COOKIE_NAME, title="Telemed", words=NOT_CONNECTED_WORDS
    )


@router.get("/state")
def state(request: Request) -> dict[str, Any]:
    """The screen's state now (the ``room.state`` message)."""
    agent: RoomAgent = request.app.state.agent
    return agent.state.to_wire()


@router.websocket("/signalling")
async def signalling(websocket: WebSocket) -> None:
    """The page's socket to the agent (clinic_client/room/link.py)."""
    await RoomLink(websocket, websocket.app.state.agent).run()


def create_room_app(
    agent: RoomAgent,
    gate: Gate,
    *,
    static_dir: Path = STATIC_DIR,
    console_static_dir: Path = CONSOLE_STATIC_DIR,
) -> FastAPI:
    """The agent's app for ``gate`` serving ``agent``: the room page from ``static_dir``."""
    app = agent_app(
        gate, static_dir=static_dir, page="room.html", on_startup=agent.start, on_shutdown=agent.aclose
    )
    app.state.agent = agent
    shared_root = console_static_dir.resolve()

    @app.get("/shared/{path:path}", include_in_schema=False)
    def shared(path: str) -> Response:
        """A module of the console's page that the room page imports (peer.js and its imports)."""
        if path not in SHARED_MODULES:
            raise ConsoleError(404, "not_found", "Not found.")
        return static_file(shared_root, path)

    app.include_router(router)
    return app
