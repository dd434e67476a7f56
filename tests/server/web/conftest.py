"""A live server in its own process, a cuttable proxy in front of it, and a booked consultation.

The browser reaches the server through the proxy (so a test can drop the page's
connections like a network failure); the host's socket and the test's API calls go
straight to the server. Users come from the identity service (tests/server/factories), the
patient straight from the database, and everything else — booking, invite, join tokens —
through the real HTTP API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from records.models import Patient
from server.db import session_scope, upgrade_database, utcnow
from server.services import Services
from tests.conftest import TEST_SECRET, make_settings
from tests.server.factories import PASSWORD, add_user
from tests.server.web.proxy import CutProxy
from tests.support.browser import chromium, require_chromium
from tests.support.live_server import ServerProcess

HOST_USERNAME = "dr.host"
HOST_NAME = "Dr Hannah Host"
HOST_ESTABLISHMENT = "HMP Example"
# The deployment's help contact (TELEMED_SUPPORT_CONTACT / _PHONE), shown on every message screen.
SUPPORT_CONTACT = "Healthcare team, HMP Example <weekdays> & 8:00-18:00"
SUPPORT_PHONE = "+44 1632 960123"
SPECIALIST_NAME = "Dr Sam Specialist"
PATIENT_NAME = "Ada Quillfeather"
PRISON_NUMBER = "A1234BC"

__all__ = ["chromium"]  # the fixture, for the tests here


@dataclass
class LiveServer:
    """``telemed serve`` in its own process, and a proxy in front of it that the browser uses."""

    server: ServerProcess
    proxy: CutProxy
    services: Services
    patient_id: str

    @property
    def url(self) -> str:
        """Where the browser reaches the server (through the proxy)."""
        return self.proxy.url

    @property
    def direct_url(self) -> str:
        """The server itself: the public URL in invite links, and the API the tests call."""
        return self.server.base_url

    @property
    def ws_url(self) -> str:
        """The signalling socket, straight to the server (for the host)."""
        return self.server.ws_url

    def browser_link(self, invite_link: str) -> str:
        """The invite link as the browser opens it: same path and fragment, through the proxy."""
        assert invite_link.startswith(f"{self.direct_url}/join#"), invite_link
        return self.url + invite_link[len(self.direct_url) :]


@contextmanager
def running_server(workdir: Path, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """``telemed serve`` (uvicorn) in a real process on a free port, with a fresh SQLite database."""
    db_url = f"sqlite:///{workdir / 'telemed.db'}"
    data_dir = workdir / "data"
    upgrade_database(db_url)
    settings = make_settings(db_url, data_dir)
    server = ServerProcess(
        {
            "TELEMED_ENVIRONMENT": "test",
            "TELEMED_SECRET_KEY": TEST_SECRET,
            "TELEMED_DATA_DIR": str(data_dir),
            "TELEMED_DATABASE_URL": db_url,
            "TELEMED_LOG_JSON": "false",
            "TELEMED_RECORDS_KEK_DIR": str(settings.records_kek_dir),
            "TELEMED_AUDIT_KEY_FILE": str(settings.audit_key_file),
            "TELEMED_SUPPORT_CONTACT": SUPPORT_CONTACT,
            "TELEMED_SUPPORT_PHONE": SUPPORT_PHONE,
            **(env or {}),
        },
        workdir=workdir,
    )
    proxy = CutProxy(server.host, server.port)
    services = Services.build(settings)
    try:
        server.start()
        proxy.start()
        add_user(services, HOST_USERNAME, display_name=HOST_NAME, establishment=HOST_ESTABLISHMENT)
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
        yield LiveServer(server=server, proxy=proxy, services=services, patient_id=patient_id)
    finally:
        server.stop()
        proxy.stop()
        services.engine.dispose()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The live server for a module of browser tests (no TURN: loopback needs none)."""
    require_chromium()  # no point starting a server the browser tests cannot use
    with running_server(tmp_path_factory.mktemp("live")) as live:
        yield live


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


def _committed(http: httpx.Client, path: str, timeout: float = 5.0) -> None:
    """Wait until a write the server answered is visible to the next request.

    server/deps.py's session dependency commits in FastAPI's default ("request") scope,
    which runs after the response has been sent, so an immediate follow-up request can
    miss the row (seen as a 404 here). Remove once the session commits before responding.
    """
    deadline = time.monotonic() + timeout
    while http.get(path).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.02)


def book(
    live: LiveServer,
    *,
    specialist: str = SPECIALIST_NAME,
    starts_in: timedelta = timedelta(0),
    room_device_id: str | None = None,
    **invite: Any,
) -> Booking:
    """Book an hour's consultation as the host, invite the specialist, get the host's join token."""
    http = httpx.Client(base_url=live.direct_url, timeout=10)
    try:
        return _book(
            http, live, specialist=specialist, starts_in=starts_in, room=room_device_id, invite=invite
        )
    except BaseException:
        http.close()
        raise


def _book(
    http: httpx.Client,
    live: LiveServer,
    *,
    specialist: str,
    starts_in: timedelta,
    room: str | None,
    invite: dict[str, Any],
) -> Booking:
    resp = http.post("/api/v1/auth/login", json={"username": HOST_USERNAME, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
    start = utcnow() + starts_in
    resp = http.post(
        "/api/v1/consultations",
        json={
            "patient_id": live.patient_id,
            "specialist": {"name": specialist},
            "room_device_id": room,
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=1)).isoformat(),
        },
    )
    assert resp.status_code == 201, resp.text
    consultation_id = resp.json()["id"]
    _committed(http, f"/api/v1/consultations/{consultation_id}")
    resp = http.post(f"/api/v1/consultations/{consultation_id}/invites", json=invite)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    link = live.browser_link(created["link"])
    host_token = ""
    if starts_in <= timedelta(minutes=15):  # the host may only join from 15 minutes before
        resp = http.post(f"/api/v1/consultations/{consultation_id}/join-token")
        assert resp.status_code == 200, resp.text
        host_token = resp.json()["token"]
    return Booking(
        consultation_id=consultation_id,
        invite_link=link,
        invite_token=link.split("#", 1)[1],
        invite_id=created["invite_id"],
        host_join_token=host_token,
        http=http,
    )


@pytest.fixture
def booking(live_server: LiveServer) -> Iterator[Booking]:
    made = book(live_server)
    yield made
    made.http.close()
