"""The admin console against the real app (SQLite and PostgreSQL): a browser-like client with its
cookie jar, Origin and CSRF header, and admins signed in with real TOTP codes (pyotp)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.identity.models import Role
from server.services import Services
from server.settings import Settings
from tests.conftest import make_settings
from tests.server.factories import PASSWORD, add_user
from tests.server.records_fixtures import Ward, build_ward

ORIGIN = "http://testserver"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) TelemedAdminTest/1.0"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Test settings whose public URL is the test client's, so the Origin check can pass."""
    return make_settings(db_url, tmp_path / "data", public_url=ORIGIN)


def code_at(secret: str, moment: float) -> str:
    """What an authenticator app shows at ``moment`` (Unix time)."""
    return pyotp.TOTP(secret).at(moment)


@dataclass
class Console:
    """The console page's side of the API: a cookie jar, Origin on every request, the CSRF token."""

    client: TestClient
    csrf: str | None = None
    secret: str | None = None
    recovery_codes: list[str] = field(default_factory=list)
    last_code_at: float = 0.0

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        values = {"Origin": ORIGIN, "User-Agent": USER_AGENT}
        if self.csrf:
            values["X-CSRF-Token"] = self.csrf
        values.update(extra or {})
        return values

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        response = self.client.request(method, path, headers=self.headers(headers), **kw)
        body = _json(response)
        if isinstance(body, dict) and isinstance(body.get("csrf_token"), str):
            self.csrf = body["csrf_token"]
        if isinstance(body, dict) and isinstance(body.get("session"), dict):
            self.csrf = body["session"]["csrf_token"]
        return response

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def sign_in(self, username: str = "root", password: str = PASSWORD) -> httpx.Response:
        return self.post("/admin/api/session", json={"username": username, "password": password})

    def enrol(self) -> dict[str, Any]:
        """Read the offered secret, answer with its current code; returns the enrolment answer."""
        offered = self.get("/admin/api/enrolment")
        assert offered.status_code == 200, offered.text
        self.secret = offered.json()["secret"]
        self.last_code_at = time.time()
        done = self.post("/admin/api/enrolment", json={"code": code_at(self.secret, self.last_code_at)})
        assert done.status_code == 200, done.text
        body: dict[str, Any] = done.json()
        self.recovery_codes = body["recovery_codes"]
        return body

    def next_code(self) -> str:
        """A code not used yet: the one for the step after the last code given (within the window)."""
        assert self.secret is not None
        self.last_code_at = max(time.time(), self.last_code_at + 30)
        return code_at(self.secret, self.last_code_at)

    def second_factor(self, **body: str) -> httpx.Response:
        return self.post("/admin/api/session/second-factor", json=body)


def _json(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    return response.json()


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem document of a refusal."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def admin_id(services: Services) -> str:
    """An admin account, "root", with no second factor yet."""
    return add_user(services, "root", role=Role.ADMIN, display_name="Ada Admin", establishment="HMP Example")


@pytest.fixture
def console(client: TestClient) -> Console:
    """A browser at the console, nobody signed in."""
    return Console(client)


@pytest.fixture
def signed_in(console: Console, admin_id: str) -> Console:
    """ "root" signed in with both factors (enrolled on this first sign-in)."""
    assert console.sign_in().status_code == 200
    console.enrol()
    return console


def other_browser(app: FastAPI) -> Console:
    """A second browser (its own cookie jar) on the app the ``client`` fixture already started."""
    return Console(TestClient(app))


@dataclass
class Clinic:
    """A ward with a live consultation (tests/server/records_fixtures) and its admin at the console."""

    ward: Ward
    console: Console


@pytest.fixture
def clinic(client: TestClient, services: Services) -> Clinic:
    """Users, devices, patients, documents and a live consultation; "root" signed in to the console."""
    ward = build_ward(client, services)
    console = Console(client)
    assert console.sign_in("root").status_code == 200
    console.enrol()
    return Clinic(ward=ward, console=console)
