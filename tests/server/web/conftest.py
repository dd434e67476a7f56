"""A live server in its own process, a cuttable proxy in front of it, and a booked consultation.

The browser reaches the server through the proxy (its address is the server's public URL,
so invite links point there); the host's socket goes straight to the server. Users come
from the identity service (tests/server/factories), the patient straight from the
database, and everything else — booking, invite, join tokens — through the real HTTP API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from records.models import Patient
from server.db import session_scope, upgrade_database, utcnow
from server.services import Services
from server.settings import Settings
from tests.conftest import TEST_SECRET, make_settings
from tests.server.factories import PASSWORD, add_user
from tests.server.web.proxy import CutProxy
from tests.support.browser import chromium, require_chromium
from tests.support.services import free_port

HOST_USERNAME = "dr.host"
HOST_NAME = "Dr Hannah Host"
SPECIALIST_NAME = "Dr Sam Specialist"
PATIENT_NAME = "Ada Quillfeather"
PRISON_NUMBER = "A1234BC"

__all__ = ["chromium"]  # the fixture, for the tests here


@dataclass
class LiveServer:
    """A ``telemed serve`` process on 127.0.0.1 and a proxy the browser uses to reach it."""

    direct_url: str
    proxy: CutProxy
    settings: Settings
    services: Services
    process: subprocess.Popen[bytes]
    log_path: Path
    patient_id: str

    @property
    def url(self) -> str:
        """The public URL (through the proxy): what the browser and invite links use."""
        return self.proxy.url

    @property
    def ws_url(self) -> str:
        """The signalling socket, straight to the server (for the host)."""
        return self.direct_url.replace("http://", "ws://") + "/ws/v1/signalling"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {timeout} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``telemed serve`` (uvicorn) in a real process, on a free port, with a fresh SQLite database."""
    require_chromium()  # no point starting a server the browser tests cannot use
    workdir = tmp_path_factory.mktemp("live")
    db_url = f"sqlite:///{workdir / 'telemed.db'}"
    upgrade_database(db_url)
    port = free_port()
    direct_url = f"http://127.0.0.1:{port}"
    proxy = CutProxy("127.0.0.1", port)
    proxy.start()
    settings = make_settings(db_url, workdir / "data", public_url=proxy.url, port=port)
    env = {
        **os.environ,
        "TELEMED_ENVIRONMENT": "test",
        "TELEMED_SECRET_KEY": TEST_SECRET,
        "TELEMED_DATA_DIR": str(workdir / "data"),
        "TELEMED_DATABASE_URL": db_url,
        "TELEMED_HOST": "127.0.0.1",
        "TELEMED_PORT": str(port),
        "TELEMED_PUBLIC_URL": proxy.url,
        "TELEMED_LOG_JSON": "false",
        "TELEMED_RECORDS_KEK_DIR": str(workdir / "data" / "keys" / "records"),
        "TELEMED_AUDIT_KEY_FILE": str(workdir / "data" / "keys" / "audit-ed25519.pem"),
    }
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
    services = Services.build(settings)
    try:
        _wait_ready(direct_url, process, log_path)
        add_user(services, HOST_USERNAME, display_name=HOST_NAME)
        with session_scope(services.engine) as session:
            patient = Patient(
                prison_number=PRISON_NUMBER,
                name=PATIENT_NAME,
                date_of_birth=date(1980, 2, 3),
                establishment="HMP Example",
            )
            session.add(patient)
            session.flush()
            patient_id = patient.id
        yield LiveServer(
            direct_url=direct_url,
            proxy=proxy,
            settings=settings,
            services=services,
            process=process,
            log_path=log_path,
            patient_id=patient_id,
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        proxy.stop()
        services.engine.dispose()


@dataclass
class Booking:
    """A consultation booked by the host, with an invite for the specialist."""

    consultation_id: str
    invite_link: str
    invite_token: str
    invite_id: str
    host_join_token: str
    http: httpx.Client

    @property
    def specialist_id(self) -> str:
        return f"specialist:{self.invite_id}"


def book(live: LiveServer, *, specialist: str = SPECIALIST_NAME, **invite: Any) -> Booking:
    """Book a consultation starting now as the host, invite the specialist, get the host's join token."""
    http = httpx.Client(base_url=live.direct_url, timeout=10)
    resp = http.post("/api/v1/auth/login", json={"username": HOST_USERNAME, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
    start = utcnow()
    resp = http.post(
        "/api/v1/consultations",
        json={
            "patient_id": live.patient_id,
            "specialist": {"name": specialist},
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=1)).isoformat(),
        },
    )
    assert resp.status_code == 201, resp.text
    consultation_id = resp.json()["id"]
    resp = http.post(f"/api/v1/consultations/{consultation_id}/invites", json=invite)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    link = created["link"]
    assert link.startswith(f"{live.url}/join#")
    resp = http.post(f"/api/v1/consultations/{consultation_id}/join-token")
    assert resp.status_code == 200, resp.text
    return Booking(
        consultation_id=consultation_id,
        invite_link=link,
        invite_token=link.split("#", 1)[1],
        invite_id=created["invite_id"],
        host_join_token=resp.json()["token"],
        http=http,
    )


@pytest.fixture
def booking(live_server: LiveServer) -> Iterator[Booking]:
    made = book(live_server)
    yield made
    made.http.close()
