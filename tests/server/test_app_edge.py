"""The edge of the HTTP API: body and header size limits, security headers, no-store on the API."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from server.db import upgrade_database
from server.identity.models import Role
from server.services import Services
from server.settings import Settings
from tests.conftest import TEST_SECRET, make_settings
from tests.server.factories import PASSWORD, add_user, bearer, login
from tests.support.live_server import ServerProcess

PROBLEM = "application/problem+json"
LOGIN = "/api/v1/auth/login"
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def test_a_declared_body_over_the_limit_is_refused_unread(client: TestClient, settings: Settings) -> None:
    limit = settings.max_request_body_bytes
    body = b"{" + b" " * (limit + 10) + b"}"
    resp = client.post(LOGIN, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "payload_too_large"
    assert resp.json()["max_bytes"] == limit
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(app: FastAPI, settings: Settings) -> None:
    # No Content-Length (chunked): the server counts as it reads and stops well before the end.
    chunk, chunks = 64 * 1024, 1024  # 64 MiB offered
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * chunk, "more_body": pulled < chunks}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": LOGIN,
        "raw_path": LOGIN.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413
    assert json.loads(body)["code"] == "payload_too_large"
    assert pulled <= settings.max_request_body_bytes // chunk + 1


def test_small_bodies_work_and_api_answers_are_not_stored(client: TestClient, services: Services) -> None:
    add_user(services, "alice")
    resp = client.post(LOGIN, json={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    me = client.get("/api/v1/me", headers=bearer(resp.json()["access_token"]))
    assert me.headers["cache-control"] == "no-store"
    refused = client.post(LOGIN, json={"username": "alice", "password": "wrong password!"})
    assert refused.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/api/v1/me", "/healthz", "/.well-known/jwks.json", "/no/such/page"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.headers["content-security-policy"] == API_CSP
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "no-referrer"


def test_pages_keep_their_own_policy(client: TestClient) -> None:
    for path in ("/join", "/admin"):
        resp = client.get(path)
        assert resp.status_code == 200
        csp = resp.headers["content-security-policy"]
        assert csp != API_CSP and "script-src 'self'" in csp
        assert resp.headers["x-frame-options"] == "DENY"


def test_headers_over_the_limit_get_431(client: TestClient, settings: Settings) -> None:
    big = "a" * (settings.max_request_header_bytes + 1)
    resp = client.get("/healthz", headers={"x-padding": big})
    assert resp.status_code == 431
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "request_headers_too_large"
    assert big not in resp.text


def test_document_import_keeps_its_own_larger_limit(tmp_path: Path, db_url: str) -> None:
    from server.app import create_app

    settings = make_settings(
        db_url, tmp_path / "data", max_request_body_bytes=4096, records_max_document_bytes=64 * 1024
    )
    services = Services.build(settings)
    try:
        with TestClient(create_app(settings, services=services)) as client:
            add_user(services, "root", role=Role.ADMIN)
            token = login(client, "root")["access_token"]
            url = "/api/v1/records/patients/nobody/documents"
            params = {"doc_type": "letter", "title": "t", "document_date": "2024-01-02"}
            # Over the API limit but under the document limit: it reaches the route (no such patient).
            under = client.post(url, params=params, content=b"x" * 20_000, headers=bearer(token))
            assert under.status_code == 404, under.text
            over = client.post(url, params=params, content=b"x" * 70_000, headers=bearer(token))
            assert over.status_code == 413 and over.json()["max_bytes"] == 64 * 1024
    finally:
        services.engine.dispose()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    """``telemed serve`` itself, in a child process."""
    db_url = f"sqlite:///{tmp_path / 'telemed.db'}"
    data_dir = tmp_path / "data"
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
        },
        workdir=tmp_path,
    )
    with server:
        yield server


def _raw_request(base_url: str, header_value_bytes: int) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Padding: {'a' * header_value_bytes}\r\n\r\n"
        try:
            sock.sendall(head.encode())
        except OSError:
            pass  # the server may close before it has read everything: its answer is what counts
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        return answer


def test_telemed_serve_refuses_a_200_kb_header(served: ServerProcess) -> None:
    answer = _raw_request(served.base_url, 200 * 1024)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), answer[:200]
    assert b"200 OK" not in status_line
    assert httpx.get(f"{served.base_url}/healthz").status_code == 200


def test_telemed_serve_answers_431_just_over_the_header_limit(served: ServerProcess) -> None:
    # Over TELEMED_MAX_REQUEST_HEADER_BYTES (16 KiB) but within what the parser buffers.
    answer = _raw_request(served.base_url, 16 * 1024 + 100)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"application/problem+json" in answer
