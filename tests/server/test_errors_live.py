"""Errors as a client on a real connection sees them: a bug answers 500 and the connection
stays usable; a body that cannot be parsed is ``malformed_body``; an exhausted pool is a 503."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import TimeoutError as PoolTimeout

from server.app import create_app
from server.services import Services
from tests.conftest import make_settings
from tests.support.live_server import LiveServer

PROBLEM = "application/problem+json"
LOGIN = "/api/v1/auth/login"


@pytest.fixture(scope="module")
def live(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A uvicorn server with two extra routes: one with a bug, one whose pool is exhausted."""
    tmp = tmp_path_factory.mktemp("errors-live")
    shutil.copyfile(sqlite_template, tmp / "telemed.db")
    settings = make_settings(f"sqlite:///{tmp / 'telemed.db'}", tmp / "data")
    services = Services.build(settings)
    app = create_app(settings, services=services)

    @app.get("/test-bug")
    def bug() -> None:
        """Fail the way a bug does (test only)."""
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    @app.get("/test-pool-timeout")
    def pool_timeout() -> None:
        """Fail the way an exhausted connection pool does (test only)."""
        raise PoolTimeout("QueuePool limit of size 5 overflow 10 reached")

    with LiveServer(app) as server:
        yield server
    services.engine.dispose()


def test_after_a_500_the_same_connection_answers_the_next_request(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url, limits=httpx.Limits(max_connections=1)) as client:
        first = client.get("/test-bug")
        assert first.status_code == 500
        assert first.headers["content-type"] == PROBLEM
        assert first.json()["code"] == "internal_error"
        assert "SQLite" not in first.text and "OverflowError" not in first.text
        assert first.headers.get("connection") != "close"
        # Before: uvicorn closed the connection after the 500 and this raised ReadError.
        second = client.get("/healthz")
        assert second.status_code == 200


def test_an_exhausted_pool_is_a_503_database_busy_with_retry_after(live: LiveServer) -> None:
    resp = httpx.get(f"{live.base_url}/test-pool-timeout")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "database_busy"
    assert resp.headers["retry-after"] == "1"
    assert "QueuePool" not in resp.text


@pytest.mark.parametrize(
    "body",
    [b'{"username": "a", ', b"\xff\xfe\x00{", b"not json at all"],
    ids=["truncated", "not-utf8", "text"],
)
def test_a_body_that_cannot_be_parsed_is_malformed_body(client: TestClient, body: bytes) -> None:
    resp = client.post(LOGIN, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.headers["content-type"] == PROBLEM
    problem = resp.json()
    assert problem["code"] == "malformed_body"
    assert problem["type"] == "urn:telemed:problem:malformed_body"


def test_malformed_body_is_documented() -> None:
    documented = Path(__file__).resolve().parents[2].joinpath("docs", "errors.md").read_text()
    for code in ("malformed_body", "database_busy"):
        assert f"`{code}`" in documented


def test_a_well_formed_body_breaking_a_rule_is_still_a_422(client: TestClient) -> None:
    resp = client.post(LOGIN, json={"username": "a"})
    assert resp.status_code == 422
    assert resp.json()["code"] == "validation_error"
