"""A running server with a booked consultation, and raw WebSocket peers to talk signalling with it.

Shared by the hub tests (tests/server/signalling) and the end-to-end call tests.

Everything is real: users, patient, enrolled devices (with Ed25519 keys), consultations and
join tokens come from the product's own services, posture tokens are verified by
``server.devices.posture`` and the hub runs in uvicorn on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jose import jwt as jose_jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from device_policy.keys import generate_device_key, key_thumbprint, public_key_b64
from device_policy.policy import DeviceKind as PolicyDeviceKind
from device_policy.posture_token import issue_posture_token
from device_policy.proof import sign_request_proof
from records.audit.log import iter_entries
from records.models import Patient
from server.app import create_app
from server.consultations import invites, joining
from server.consultations import service as consultations
from server.consultations.models import Consultation
from server.db import session_scope, upgrade_database, utcnow
from server.devices.models import Device, DeviceKind
from server.identity.models import Role
from server.services import Services
from server.settings import Settings
from tests.conftest import make_settings
from tests.server.factories import add_user
from tests.support.live_server import LiveServer
from tests.support.services import port_open, service_missing

ESTABLISHMENT = "HMP Example"
TIMEOUT = 10.0


@dataclass
class Enrolled:
    """An enrolled device and its private key (what its agent holds)."""

    id: str
    kind: DeviceKind
    key: Ed25519PrivateKey


class Peer:
    """One raw signalling socket, as a test drives it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        self._ids = 0

    @property
    def id(self) -> str:
        """This peer's participant id (after welcome)."""
        return str(self.welcome["participant_id"])

    def next_id(self) -> str:
        self._ids += 1
        return f"m{self._ids}"

    async def send(self, **message: Any) -> None:
        """Send one protocol message (``v`` defaults to 1)."""
        message.setdefault("v", 1)
        await self.ws.send(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message."""
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(data)
        self.seen.append(message)
        return message

    async def expect(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """Read until a message of ``kind`` (with the given fields) arrives; return it."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message["type"] == kind and all(message.get(k) == v for k, v in match.items()):
                    return message

    async def got(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """A message of ``kind`` already received, or the next one to arrive."""
        for message in self.seen:
            if message["type"] == kind and all(message.get(k) == v for k, v in match.items()):
                return message
        return await self.expect(kind, timeout, **match)

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a control message with an id; return the ack, or the error that refers to it."""
        ref = self.next_id()
        await self.send(type=kind, id=ref, **fields)
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.recv()
                if message.get("ref") == ref and message["type"] in ("ack", "error", "posture.accepted"):
                    return message

    async def sync(self) -> list[dict[str, Any]]:
        """Round trip a ping; returns every message that arrived before the pong."""
        ref = self.next_id()
        start = len(self.seen)
        await self.send(type="ping", id=ref)
        await self.expect("pong", ref=ref)
        return self.seen[start:-1]

    async def closed(self, timeout: float = TIMEOUT) -> int:
        """Read until the server closes the socket; return the close code."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame from the server"
            return exc.rcvd.code
        raise AssertionError("unreachable")

    def types(self) -> list[str]:
        """Types of every message received so far."""
        return [m["type"] for m in self.seen]

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Scene:
    """A clinic with a booked consultation and its server running."""

    services: Services
    server: LiveServer
    host_user_id: str
    other_host_user_id: str
    patient_id: str
    room: Enrolled
    laptop: Enrolled
    consultation_id: str
    peers: list[Peer] = field(default_factory=list)
    nodes: list[LiveServer] = field(default_factory=list)
    node_services: list[Services] = field(default_factory=list)

    # --- bookings and tokens ----------------------------------------------------------

    def book(self, *, room: Enrolled | None = None, host_user_id: str | None = None) -> str:
        """Book another consultation starting now (with a specialist, and ``room`` if given)."""
        with session_scope(self.services.engine) as session:
            start = utcnow()
            booked = consultations.schedule_consultation(
                session=session,
                patient_id=self.patient_id,
                host_user_id=host_user_id or self.host_user_id,
                room_device_id=room.id if room else None,
                specialist=("Dr Specialist", None),
                start=start,
                end=start + timedelta(hours=1),
                created_by=host_user_id or self.host_user_id,
            )
            return booked.id

    def _consultation(self, session: Any, consultation_id: str | None) -> Consultation:
        return consultations.get_consultation(
            session=session, consultation_id=consultation_id or self.consultation_id
        )

    def host_token(self, consultation_id: str | None = None, *, device: Enrolled | None = None) -> str:
        """A host join token, from the consultations service."""
        with session_scope(self.services.engine) as session:
            consultation = self._consultation(session, consultation_id)
            return joining.host_join_token(
                session=session,
                jwt=self.services.jwt,
                consultation=consultation,
                by_user_id=consultation.host_user_id,
                device_id=device.id if device else None,
            ).token

    def room_token(self, device: Enrolled | None = None) -> str:
        """The room endpoint's join token for the consultation booked for it now."""
        with session_scope(self.services.engine) as session:
            return joining.room_join_token(
                session=session, jwt=self.services.jwt, device_id=(device or self.room).id
            ).token

    def specialist_token(self, consultation_id: str | None = None, name: str = "Dr Specialist") -> str:
        """Invite and redeem: the specialist's join token."""
        with session_scope(self.services.engine) as session:
            consultation = self._consultation(session, consultation_id)
            created = invites.create_invite(
                session=session, consultation=consultation, name=name, by_user_id=consultation.host_user_id
            )
            raw = created.token
        with session_scope(self.services.engine) as session:
            return invites.redeem_invite(session=session, jwt=self.services.jwt, raw_token=raw).token

    def posture_token(self, device: Enrolled, ttl: timedelta = timedelta(minutes=5)) -> str:
        """A posture token as the attestation endpoint issues it to a compliant device."""
        return issue_posture_token(
            signer=self.services.jwt,
            device_id=device.id,
            device_kind=PolicyDeviceKind(device.kind.value),
            thumbprint=key_thumbprint(device.key.public_key()),
            policy_version="test",
            policy_hash="0" * 64,
            ttl=ttl,
        )

    def proof(self, device: Enrolled, posture_token: str, join_token: str, node: int = 0) -> str:
        """The request proof a device signs for the signalling socket (nonce: the join token's jti)."""
        return sign_request_proof(
            device.key,
            method="WS",
            url=self.nodes[node].ws_url,
            token_jti=jose_jwt.get_unverified_claims(posture_token)["jti"],
            iat=utcnow(),
            nonce=jose_jwt.get_unverified_claims(join_token)["jti"],
        )

    def posture_fields(
        self, device: Enrolled, join_token: str, ttl: timedelta = timedelta(minutes=5), node: int = 0
    ) -> dict[str, str]:
        """``posture_token`` and ``posture_proof`` for a hello or a posture message (to ``node``)."""
        token = self.posture_token(device, ttl)
        return {"posture_token": token, "posture_proof": self.proof(device, token, join_token, node)}

    def prepare_start(self, consultation_id: str | None = None) -> None:
        """The host confirms identity and records consent (REST in real life)."""
        with session_scope(self.services.engine) as session:
            consultation = self._consultation(session, consultation_id)
            consultations.confirm_identity(
                session=session, consultation=consultation, by_user_id=consultation.host_user_id
            )
            consultations.record_consent(
                session=session,
                consultation=consultation,
                by_user_id=consultation.host_user_id,
                consent="verbal",
                note=None,
            )

    def state(self, consultation_id: str | None = None) -> str:
        """The consultation's state in the database."""
        with session_scope(self.services.engine) as session:
            return self._consultation(session, consultation_id).state.value

    # --- sockets ----------------------------------------------------------------------

    async def connect(self, node: int = 0) -> Peer:
        """Open a socket (no hello yet) to one of the nodes."""
        peer = Peer(await connect(self.nodes[node].ws_url, max_size=None, open_timeout=TIMEOUT))
        self.peers.append(peer)
        return peer

    async def join(self, join_token: str, *, node: int = 0, **hello: Any) -> Peer:
        """Open a socket and say hello; returns once welcomed."""
        peer = await self.connect(node)
        await peer.send(type="hello", join_token=join_token, **hello)
        peer.welcome = await peer.expect("welcome")
        return peer

    async def join_host(self, consultation_id: str | None = None, *, node: int = 0) -> Peer:
        return await self.join(self.host_token(consultation_id), node=node)

    async def join_room(self, device: Enrolled | None = None, *, node: int = 0, **hello: Any) -> Peer:
        device = device or self.room
        token = self.room_token(device)
        return await self.join(token, node=node, **{**self.posture_fields(device, token, node=node), **hello})

    async def join_specialist(self, consultation_id: str | None = None, *, node: int = 0) -> Peer:
        return await self.join(self.specialist_token(consultation_id), node=node)

    async def admitted(self, host: Peer, peer: Peer) -> None:
        """The host admits ``peer``; wait until it knows."""
        assert (await host.request("admit", participant=peer.id))["type"] == "ack"
        await peer.expect("admitted")

    async def close_all(self) -> None:
        for peer in self.peers:
            await peer.close()


def enrol_device(services: Services, device_id: str, kind: DeviceKind) -> Enrolled:
    """An enrolled device with a real key (enrolment itself is tested elsewhere)."""
    key = generate_device_key()
    with session_scope(services.engine) as session:
        session.add(
            Device(
                id=device_id,
                kind=kind,
                display_name=f"{device_id} display",
                serial=f"SN-{device_id}",
                model="Test model",
                establishment=ESTABLISHMENT,
                public_key=public_key_b64(key.public_key()),
                key_thumbprint=key_thumbprint(key.public_key()),
            )
        )
    return Enrolled(id=device_id, kind=kind, key=key)


def add_patient(services: Services) -> str:
    with session_scope(services.engine) as session:
        patient = Patient(
            prison_number="A1234BC",
            name="Ada Quillfeather",
            date_of_birth=date(1980, 2, 3),
            establishment=ESTABLISHMENT,
        )
        session.add(patient)
        session.flush()
        return patient.id


def build_scene(services: Services, server: LiveServer) -> Scene:
    """Users, patient, devices and one consultation (host + room + specialist) starting now."""
    return build_scene_on([services], [server])


def build_scene_on(services_list: list[Services], servers: list[LiveServer]) -> Scene:
    """The scene on several nodes sharing one database (and Redis, when configured)."""
    services, server = services_list[0], servers[0]
    host_user_id = add_user(services, "doctor", role=Role.CLINICIAN, display_name="Dr Host")
    other = add_user(services, "nurse", role=Role.CLINICIAN, display_name="Nurse Other")
    scene = Scene(
        services=services,
        server=server,
        host_user_id=host_user_id,
        other_host_user_id=other,
        patient_id=add_patient(services),
        room=enrol_device(services, "room-01", DeviceKind.ROOM_ENDPOINT),
        laptop=enrol_device(services, "laptop-01", DeviceKind.PRISON_LAPTOP),
        consultation_id="",
        nodes=list(servers),
        node_services=list(services_list),
    )
    scene.consultation_id = scene.book(room=scene.room)
    return scene


SceneFactory = Callable[..., Scene]


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once per session (migrations are tested elsewhere)."""
    path = tmp_path_factory.mktemp("signalling-template") / "telemed.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def scene_db_url(migrated_template: Path, tmp_path: Path) -> str:
    """A fresh copy of the migrated database for one test."""
    path = tmp_path / "telemed.db"
    shutil.copyfile(migrated_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
async def make_scene(scene_db_url: str, tmp_path: Path) -> AsyncIterator[SceneFactory]:
    """Start a server with these settings overrides and build the scene (one per test)."""
    started: list[tuple[LiveServer, Services]] = []
    scenes: list[Scene] = []

    def factory(nodes: int = 1, **overrides: Any) -> Scene:
        values: dict[str, Any] = {"signalling_hello_timeout": timedelta(seconds=1), "jwt_leeway_s": 0}
        values.update(overrides)
        settings: Settings = make_settings(scene_db_url, tmp_path / "data", **values)
        built_services: list[Services] = []
        servers: list[LiveServer] = []
        for _ in range(nodes):
            services = Services.build(settings)
            server = LiveServer(create_app(settings, services=services)).start()
            started.append((server, services))
            built_services.append(services)
            servers.append(server)
        built = build_scene_on(built_services, servers)
        scenes.append(built)
        return built

    yield factory
    for built in scenes:
        await built.close_all()
    for server, services in started:
        server.stop()
        services.engine.dispose()


@pytest.fixture
def scene(make_scene: SceneFactory) -> Scene:
    """The default scene: a 1 s hello timeout, a 30 s resume grace."""
    return make_scene()


def audit_actions(scene: Scene, consultation_id: str | None = None) -> list[tuple[str, str]]:
    """``(action, outcome)`` of the ``signalling.*`` events in the audit log, in order."""
    wanted = consultation_id or scene.consultation_id
    with session_scope(scene.services.engine) as session:
        return [
            (e.action, e.outcome)
            for e in iter_entries(session=session)
            if e.action.startswith("signalling.") and e.consultation_id == wanted
        ]


async def audited(scene: Scene, *expected: tuple[str, str]) -> list[tuple[str, str]]:
    """Wait until the audit log holds every ``(action, outcome)`` (the hub writes it in the background)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            actions = audit_actions(scene)
            if all(e in actions for e in expected):
                return actions
            await asyncio.sleep(0.05)


REDIS_URL = os.environ.get("TELEMED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_overrides() -> Iterator[dict[str, Any]]:
    """Settings for the real Redis, with a key and channel prefix of this test's own (removed after)."""
    parsed = urlsplit(REDIS_URL)
    if not port_open(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        service_missing(f"Redis at {parsed.hostname}:{parsed.port}")
    prefix = f"telemed-test-{secrets.token_hex(6)}"
    yield {"redis_url": REDIS_URL, "redis_prefix": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
