"""Health, readiness, metrics, request ids, JSON logs and the problem+json handler."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from server.app import create_app
from server.ops.logging import JsonFormatter, request_id_var
from server.services import Services
from server.settings import Settings
from tests.server.factories import add_user, bearer, login


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


def test_readyz_503_when_database_unreachable(sqlite_url: str, settings: Settings) -> None:
    services = Services.build(settings)
    app = create_app(settings, services=services)
    with TestClient(app) as client:
        # The database goes away under a running server.
        original = services.engine
        services.engine = create_engine("sqlite:////nonexistent-dir/telemed.db")
        resp = client.get("/readyz")
        services.engine = original
    original.dispose()
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "service_unavailable"
    assert resp.json()["checks"] == {"database": "down"}


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'telemed_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_request_id_echoed_and_generated(client: TestClient) -> None:
    mine = client.get("/healthz", headers={"X-Request-ID": "abc12345-trace"})
    assert mine.headers["x-request-id"] == "abc12345-trace"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    problem = client.get("/no-such-route", headers={"X-Request-ID": "req-00000001"})
    assert problem.json()["request_id"] == "req-00000001"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no-such-route", 404, "not_found"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
        ("POST", "/api/v1/auth/login", 422, "validation_error"),
        ("GET", "/api/v1/users", 401, "authentication_required"),
    ],
)
def test_errors_are_problem_json(client: TestClient, method: str, path: str, status: int, code: str) -> None:
    resp = client.request(method, path)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"urn:telemed:problem:{code}"
    assert {"title", "detail"} <= body.keys()
    # The route's template where one matched (these have no parameters), nothing where none did.
    assert body.get("instance") == (None if path == "/no-such-route" else path)


def test_logs_are_json_with_request_id_and_never_carry_tokens(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    add_user(services, "alice")
    caplog.set_level(logging.INFO)
    tokens = login(client, "alice")
    client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert lines
    for line in lines:
        parsed = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= parsed.keys()
        assert tokens["access_token"] not in line and tokens["refresh_token"] not in line
    access = [json.loads(x) for x in lines if json.loads(x)["logger"] == "telemed.access"]
    assert any(a["route"] == "/api/v1/me" and a["status"] == 200 for a in access)


def test_formatter_redacts_secret_fields() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", (), None)
    record.token = "eyJ.secret.token"
    record.user_id = "u1"
    reset = request_id_var.set("rid-12345678")
    try:
        out = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(reset)
    assert out["token"] == "[redacted]" and out["user_id"] == "u1"
    assert out["request_id"] == "rid-12345678"


def test_openapi_lists_every_route_with_a_summary(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, ops in schema["paths"].items():
        for op in ops.values():
            assert op.get("description") or op.get("summary"), path
