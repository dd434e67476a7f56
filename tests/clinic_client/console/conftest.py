"""A real telemed server (development mode: simulated posture allowed), an enrolled laptop, and the
laptop agent in front of it — driven the way the console page drives it.

Every response and bridge message a test sees is kept, with every token the agent held at
the time; :func:`assert_no_secrets` proves none of them reached the page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect

from clinic_client.posture import SimulatedSource
from device_policy.keys import b64url_encode
from server.db import session_scope
from server.devices.models import Device, DeviceKind
from server.identity.models import Role
from server.settings import Environment
from tests.server.factories import PASSWORD, add_user
from tests.support.console_agent import AgentThread, ConsolePage
from tests.support.signalling_scene import Enrolled, Scene, SceneFactory, enrol_device

LAPTOP_ID = "laptop-console-01"
# What the simulator reports when not told otherwise: enrol these and its facts match.
SIMULATOR_IDS = {"imei": "356938035643809", "iccid": "8944000000000000001", "imsi": "234150000000001"}
TIMEOUT = 10.0


@dataclass
class Clinic:
    """The running server's scene, with a laptop enrolled for the console."""

    scene: Scene
    laptop: Enrolled
    static_dir: Path
    secrets: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    @property
    def server_url(self) -> str:
        return self.scene.server.base_url

    def agent(self, profile: str = "compliant", **options: Any) -> AgentThread:
        """The agent for the enrolled laptop, reporting a simulated profile (not yet started)."""
        return AgentThread(
            self.server_url,
            self.laptop.id,
            self.laptop.key,
            source=SimulatedSource(profile),
            static_dir=self.static_dir,
            **options,
        )

    @contextmanager
    def server_http(self, username: str = "root") -> Iterator[httpx.Client]:
        """A signed-in HTTP client straight to the server (an admin importing documents…)."""
        with httpx.Client(base_url=self.server_url, timeout=TIMEOUT) as http:
            token = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD}).json()
            http.headers["Authorization"] = f"Bearer {token['access_token']}"
            yield http

    def import_document(self, content: bytes, content_type: str = "application/pdf") -> str:
        """An admin imports a document for the scene's patient; its id."""
        with self.server_http() as http:
            response = http.post(
                f"/api/v1/records/patients/{self.scene.patient_id}/documents",
                params={"doc_type": "letter", "title": "Discharge letter", "document_date": "2026-01-05"},
                content=content,
                headers={"Content-Type": content_type},
            )
            assert response.status_code == 201, response.text
            return str(response.json()["id"])


def enrol_simulated_laptop(scene: Scene, device_id: str = LAPTOP_ID) -> Enrolled:
    """A prison laptop enrolled with the identifiers the simulator reports."""
    enrolled = enrol_device(scene.services, device_id, DeviceKind.PRISON_LAPTOP)
    with session_scope(scene.services.engine) as session:
        device = session.get(Device, device_id)
        assert device is not None
        for name, value in SIMULATOR_IDS.items():
            setattr(device, name, value)
    return enrolled


def key_secrets(key: Ed25519PrivateKey) -> set[str]:
    """The private key as it could leak: raw base64url and PEM body."""
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {b64url_encode(raw), pem.splitlines()[1]}


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    """A stand-in for the page's files (the page itself is tested with the browser)."""
    root = tmp_path / "static"
    (root / "js").mkdir(parents=True)
    (root / "console.html").write_text(
        '<!doctype html><html lang="en"><head><title>Telemed console</title>'
        '<script type="module" src="/assets/js/console.mjs"></script></head><body></body></html>'
    )
    (root / "js" / "console.mjs").write_text("export const ready = true;\n")
    (root / "console.css").write_text("body { margin: 0; }\n")
    return root


@pytest.fixture
def clinic(make_scene: SceneFactory, static_dir: Path) -> Clinic:
    """The server (development mode), users, patient, room endpoint and an enrolled laptop."""
    scene = make_scene(environment=Environment.DEVELOPMENT, login_free_attempts_per_account_client=3)
    add_user(scene.services, "root", role=Role.ADMIN, display_name="Admin Root")
    add_user(scene.services, "dr.special", role=Role.SPECIALIST, display_name="Dr Special")
    laptop = enrol_simulated_laptop(scene)
    built = Clinic(scene=scene, laptop=laptop, static_dir=static_dir)
    built.secrets |= key_secrets(laptop.key)
    return built


@pytest.fixture
def agent(clinic: Clinic) -> Iterator[AgentThread]:
    """The agent for the laptop, compliant, running on a free port."""
    with clinic.agent() as running:
        yield running


class Page(ConsolePage):
    """The console page: every response read and kept, with every token the agent held then."""

    def __init__(self, running: AgentThread, clinic: Clinic, **kwargs: Any) -> None:
        super().__init__(running, **kwargs)
        self.thread = running
        self.clinic = clinic

    def note_secrets(self) -> None:
        """Remember what the agent holds right now (it forgets tokens on sign-out)."""
        self.clinic.secrets |= set(self.thread.agent.secrets())

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self.note_secrets()
        response = await super().send(request, **kwargs)
        await response.aread()
        self.note_secrets()
        self.clinic.seen.append(json.dumps(dict(response.headers)))
        self.clinic.seen.append(response.content.decode("latin-1"))
        return response

    async def sign_in(self, username: str = "doctor", password: str = PASSWORD) -> dict[str, Any]:
        response = await self.post("/api/sign-in", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ready(self) -> None:
        """Signed in as the host, and the laptop checked compliant."""
        await self.sign_in()
        response = await self.post("/api/device-check")
        assert response.status_code == 200 and response.json()["compliant"], response.text


@pytest.fixture
async def page(agent: AgentThread, clinic: Clinic) -> AsyncIterator[Page]:
    """The console page after opening the launch link."""
    async with Page(agent, clinic) as opened:
        yield opened


class Socket:
    """The page's signalling bridge socket; every frame kept for the secrets check."""

    def __init__(self, ws: ClientConnection, clinic: Clinic, running: AgentThread) -> None:
        self.ws = ws
        self.clinic = clinic
        self.running = running
        self.seen: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        self.clinic.secrets |= set(self.running.agent.secrets())
        text = raw if isinstance(raw, str) else raw.decode()
        self.clinic.seen.append(text)
        message: dict[str, Any] = json.loads(text)
        self.seen.append(message)
        return message

    async def got(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """A message of ``kind`` already received, or the next one to arrive."""
        for message in self.seen:
            if message.get("type") == kind and all(message.get(k) == v for k, v in match.items()):
                return message
        return await self.expect(kind, timeout, **match)

    async def expect(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message.get("type") == kind and all(message.get(k) == v for k, v in match.items()):
                    return message


async def open_bridge(page: Page, *, origin: str | None = None) -> Socket:
    """Open ``/api/signalling`` with the page's cookie and Origin."""
    running = page.thread
    cookie = f"telemed_console={page.cookies.get('telemed_console')}"
    ws = await connect(
        running.ws_url,
        origin=origin or running.base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=TIMEOUT,
    )
    return Socket(ws, page.clinic, running)


def assert_no_secrets(clinic: Clinic, *extra: str) -> None:
    """No token, proof or key the agent held appears in anything the page received."""
    secrets = {s for s in clinic.secrets | set(extra) if s}
    assert len(secrets) >= 3, "the test never saw the agent hold its tokens"
    everything = "\n".join(clinic.seen)
    leaked = [s[:12] + "…" for s in secrets if s in everything]
    assert not leaked, f"tokens reached the page: {leaked}"
    for name in (
        "posture_token",
        "posture_proof",
        "resume_token",
        "join_token",
        "X-Posture",
        "X-Record-Grant",
    ):
        assert name not in everything, f"{name} reached the page"


def today() -> date:
    return date.today()
