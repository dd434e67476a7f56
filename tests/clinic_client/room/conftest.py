"""A real telemed server (development mode: simulated posture allowed), an enrolled room endpoint
with nothing booked for it yet, and the room's agent in front of it — talked to as its page does.

Every frame the page's socket receives is kept with every token the agent held at the time;
:func:`assert_no_secrets` proves none of them reached the page.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect

from clinic_client.posture import PostureAgent, SimulatedSource
from clinic_client.room import RoomAgent, create_room_app, room_gate
from clinic_client.room.app import COOKIE_NAME, STATIC_DIR
from server.app import create_app
from server.devices.models import DeviceKind
from server.services import Services
from server.settings import Environment
from tests.support.console_agent import ConsolePage, ServingThread
from tests.support.live_server import LiveServer
from tests.support.signalling_scene import Enrolled, Peer, Scene, SceneFactory, enrol_device

ROOM_ID = "room-screen-01"
TIMEOUT = 15.0
# Quick enough for tests: a booking is found within half a second, an end shows for two.
QUICK = {"poll_s": 0.3, "retry_s": 0.3, "ended_hold_s": 2.0, "page_grace_s": 5.0}


class RoomAgentThread(ServingThread):
    """The room agent's app under uvicorn in a background thread (its own event loop)."""

    def __init__(
        self,
        server_url: str,
        device_id: str,
        key: Ed25519PrivateKey,
        *,
        profile: str = "compliant",
        static_dir: Path = STATIC_DIR,
        **options: Any,
    ) -> None:
        super().__init__(room_gate)
        posture = PostureAgent(
            server_url=server_url, device_id=device_id, private_key=key, source=SimulatedSource(profile)
        )
        self.agent = RoomAgent(server_url=server_url, posture=posture, **{**QUICK, **options})
        self.serve(create_room_app(self.agent, self.gate, static_dir=static_dir))


@dataclass
class Room:
    """The server's scene with a room endpoint enrolled for the screen (nothing booked for it)."""

    scene: Scene
    device: Enrolled
    secrets: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    restarted: list[tuple[LiveServer, Services]] = field(default_factory=list)

    @property
    def server_url(self) -> str:
        return self.scene.server.base_url

    def agent(self, **options: Any) -> RoomAgentThread:
        """The room's agent (not yet started)."""
        return RoomAgentThread(self.server_url, self.device.id, self.device.key, **options)

    def book(self) -> str:
        """Book a consultation for this room, starting now, hosted by "Dr Host"."""
        return self.scene.book(room=self.device)

    @property
    def participant_id(self) -> str:
        return f"room:{self.device.id}"

    def stop_server(self) -> None:
        """Stop the server (its sockets close with 1012, as a restarting server's do)."""
        self.scene.server.stop()

    def start_server(self) -> LiveServer:
        """Start a new server on the same port and database (the old one stopped)."""
        settings = self.scene.services.settings
        services = Services.build(settings)
        fresh = LiveServer(create_app(settings, services=services), port=self.scene.server.port).start()
        self.restarted.append((fresh, services))
        self.scene.server = fresh
        self.scene.nodes[0] = fresh
        self.scene.node_services[0] = services
        return fresh

    def restart_server(self) -> LiveServer:
        """Stop the server and start a new one in its place (a restarted server)."""
        self.stop_server()
        return self.start_server()


@pytest.fixture
def room(make_scene: SceneFactory) -> Iterator[Room]:
    """The server (development mode) and a room endpoint enrolled for the screen."""
    scene = make_scene(environment=Environment.DEVELOPMENT)
    built = Room(scene=scene, device=enrol_device(scene.services, ROOM_ID, DeviceKind.ROOM_ENDPOINT))
    yield built
    for server, services in built.restarted:
        server.stop()
        services.engine.dispose()


@pytest.fixture
def agent(room: Room) -> Iterator[RoomAgentThread]:
    """The room's agent, compliant, running on a free port."""
    with room.agent() as running:
        yield running


@pytest.fixture
async def page(agent: RoomAgentThread) -> AsyncIterator[ConsolePage]:
    """An HTTP client that opened the launch link (it holds the session cookie)."""
    async with ConsolePage(agent) as opened:
        yield opened


@pytest.fixture
async def screen(page: ConsolePage, room: Room) -> Screen:
    """The page's socket, once the agent has found nothing booked for the room."""
    opened = await open_screen(page, room)
    await opened.screen("idle")
    return opened


class Screen(Peer):
    """The page's socket to the agent (a raw protocol socket, as the hub tests drive theirs);
    every frame kept, with what the agent held then, for the secrets check."""

    def __init__(self, ws: ClientConnection, room: Room, running: RoomAgentThread | None) -> None:
        super().__init__(ws)
        self.room = room
        self.running = running

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        message = await super().recv(timeout)
        if self.running is not None:  # an agent in this process: what it holds now
            self.room.secrets |= set(await self.running.run(_secrets(self.running.agent)))
        self.room.seen.append(json.dumps(message))
        return message

    async def screen(self, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next ``room.state`` showing screen ``name``."""
        return await self.expect("room.state", timeout, screen=name)

    def screens(self) -> list[str]:
        """Every screen the page was told, in order."""
        return [m["screen"] for m in self.seen if m.get("type") == "room.state"]


async def _secrets(agent: RoomAgent) -> list[str]:
    return agent.secrets()


async def open_screen(page: ConsolePage, room: Room, *, origin: str | None = None) -> Screen:
    """Open ``/api/signalling`` with the page's cookie and Origin."""
    base_url = page.running.base_url
    ws = await connect(
        base_url.replace("http://", "ws://", 1) + "/api/signalling",
        origin=origin or base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": f"{COOKIE_NAME}={page.cookies.get(COOKIE_NAME)}"},
        open_timeout=TIMEOUT,
    )
    running = page.running if isinstance(page.running, RoomAgentThread) else None
    return Screen(ws, room, running)


def assert_no_secrets(room: Room, *extra: str) -> None:
    """No token or proof the agent held appears in anything the page received."""
    secrets = {s for s in room.secrets | set(extra) if s}
    assert len(secrets) >= 2, "the test never saw the agent hold its tokens"
    everything = "\n".join(room.seen)
    leaked = [s[:12] + "…" for s in secrets if s in everything]
    assert not leaked, f"tokens reached the page: {leaked}"
    for name in ("posture_token", "posture_proof", "resume_token", "join_token", "token"):
        assert f'"{name}"' not in everything, f"{name} reached the page"
