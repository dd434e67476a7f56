"""What the story's steps share: the options, the server and API client, and what has been
built so far (accounts, patient, devices, consultation, the call, the grant)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.call import LocalMedia, synthetic_media
from clinic_client.posture import PostureAgent, SimulatedSource
from clinic_client.session import ConsultationSession, SessionState
from device_policy.simulated import SimulatedProfile
from server.demo import cast
from server.demo.api import Api, bearer
from server.demo.embedded import EmbeddedServer
from server.demo.laptop import Grant
from server.demo.steps import Observer, QuietObserver, Unexpected

CONSULTATION_LENGTH = timedelta(minutes=30)
MEDIA_SECONDS = 4.0
WAIT_S = 30.0
# Marks in the synthetic video, so each side's frames can be told apart.
HOST_TAG, ROOM_TAG = 1, 2


@dataclass(frozen=True)
class DemoOptions:
    """How to run the story.

    ``data_dir`` should be new or empty (the story creates its accounts there).
    ``remove_data`` deletes it when the demo closes after a successful run (a failed run
    keeps it, with the server log, for a look).
    """

    data_dir: Path
    remove_data: bool = False
    media_seconds: float = MEDIA_SECONDS


@dataclass
class Device:
    """An enrolled device of the story and the key its agent holds."""

    card: cast.DeviceCard
    key: Ed25519PrivateKey
    key_file: Path


@dataclass
class Party:
    """A participant in the call: its session and the synthetic camera and microphone it sends."""

    session: ConsultationSession
    media: LocalMedia

    @property
    def id(self) -> str:
        """Participant id (``host:…``, ``room:…``)."""
        return self.session.client.participant_id


@dataclass
class Scene:
    """What the story has built so far."""

    credentials: cast.Credentials | None = None
    admin_token: str = field(default="", repr=False)
    clinician_token: str = field(default="", repr=False)
    patient_id: str = ""
    document_id: str = ""
    document_sha256: str = ""
    document_size: int = 0
    devices: dict[str, Device] = field(default_factory=dict)
    consultation_id: str = ""
    laptop_agent: PostureAgent | None = None
    room_agent: PostureAgent | None = None
    host: Party | None = None
    room: Party | None = None
    grant: Grant | None = None


class Context:
    """The story's shared state and the helpers its steps use."""

    def __init__(self, options: DemoOptions, observer: Observer | None = None) -> None:
        self.options = options
        self.observer: Observer = observer or QuietObserver()
        self.server: EmbeddedServer | None = None
        self.api: Api | None = None
        self.scene = Scene()

    @property
    def demo_dir(self) -> Path:
        """Where the story keeps what a person needs to carry on: passwords, device keys, exports."""
        return self.options.data_dir / "demo"

    def require_api(self) -> Api:
        """The API client (the server must be running)."""
        if self.api is None:
            raise RuntimeError("the server is not running")
        return self.api

    def require_server(self) -> EmbeddedServer:
        """The running server."""
        if self.server is None or self.server.services is None:
            raise RuntimeError("the server is not running")
        return self.server

    def device(self, card: cast.DeviceCard) -> Device:
        """An enrolled device of the story."""
        return self.scene.devices[card.id]

    def agent(
        self, card: cast.DeviceCard, profile: SimulatedProfile = SimulatedProfile.COMPLIANT
    ) -> PostureAgent:
        """A posture agent for an enrolled device, reporting a simulated profile."""
        return PostureAgent(
            server_url=self.require_server().base_url,
            device_id=card.id,
            private_key=self.device(card).key,
            source=SimulatedSource(profile, **card.identifiers),
        )

    async def join_call(self, token: str, tag: int, posture: PostureAgent) -> Party:
        """Join a consultation with a join token, sending synthetic video and a tone."""
        media = synthetic_media(source_tag=tag)
        try:
            session = await ConsultationSession.join(
                self.require_server().base_url, token, media=media, posture=posture
            )
        except BaseException:
            media.stop()
            raise
        return Party(session=session, media=media)

    def parties(self) -> tuple[Party, Party]:
        """Host and room, both in the call."""
        if self.scene.host is None or self.scene.room is None:
            raise RuntimeError("host and room are not both in the call")
        return self.scene.host, self.scene.room

    async def consultation(self) -> dict[str, Any]:
        """The consultation as its host sees it through the API."""
        return await self.require_api().json(
            "GET",
            f"/api/v1/consultations/{self.scene.consultation_id}",
            headers=bearer(self.scene.clinician_token),
        )

    async def wait(self, party: Party, what: str, predicate: Callable[[SessionState], bool]) -> SessionState:
        """Wait until ``predicate`` holds for a party; :class:`Unexpected` names where it got stuck."""
        try:
            return await party.session.wait_until(predicate, WAIT_S)
        except TimeoutError:
            state = party.session.state
            raise Unexpected(
                f"{what} did not happen within {WAIT_S:g} s (status {state.status}, "
                f"consultation {state.consultation_state})"
            ) from None

    async def close(self) -> None:
        """Leave the call, stop the agents, the API client and the server."""
        for party in (self.scene.host, self.scene.room):
            if party is not None:
                # Closing a session that already ended may complain; the rest must still close.
                with contextlib.suppress(Exception):
                    await party.session.close()
                party.media.stop()
        for agent in (self.scene.laptop_agent, self.scene.room_agent):
            if agent is not None:
                await agent.aclose()
        if self.api is not None:
            await self.api.aclose()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
