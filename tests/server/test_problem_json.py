"""Every error in the trees (server, consultations, records, device_policy) answers problem+json."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from device_policy.errors import DevicePolicyError
from records.errors import RecordsError
from server.app import create_app
from server.errors import TelemedError
from server.ops.logging import JsonFormatter
from server.services import Services
from tests.conftest import make_settings

PROBLEM = "application/problem+json"
REQUEST_ID = "req-problem-0001"


def _tree(base: type[Exception]) -> list[type[Exception]]:
    found: list[type[Exception]] = [base]
    for sub in base.__subclasses__():
        found.extend(_tree(sub))
    return found


# create_app (imported above) has imported every feature, so every subclass is defined by now.
ERRORS = {
    cls.__qualname__ + "@" + cls.__module__: cls
    for b in (TelemedError, DevicePolicyError, RecordsError)
    for cls in _tree(b)
}


def _instance(cls: type[Exception]) -> Exception:
    # The constructors differ (state=, report=…); the handler reads only code/status/title/detail.
    exc = cls.__new__(cls)
    Exception.__init__(exc, "Something specific went wrong")
    return exc


@pytest.fixture(scope="module")
def raising_app(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, TestClient]]:
    """One app for the module (nothing here touches the database) with routes that raise."""
    tmp = tmp_path_factory.mktemp("problem-json")
    shutil.copyfile(sqlite_template, tmp / "telemed.db")
    settings = make_settings(f"sqlite:///{tmp / 'telemed.db'}", tmp / "data")
    services = Services.build(settings)
    app = create_app(settings, services=services)

    @app.get("/test-raise/{name}")
    def raise_it(name: str) -> None:
        """Raise the named error (test only)."""
        raise _instance(ERRORS[name])

    @app.get("/test-bug")
    def bug() -> None:
        """Fail the way a bug does (test only)."""
        raise RuntimeError("db password is hunter2")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client
    services.engine.dispose()


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_each_error_is_a_problem_document_with_its_code(
    raising_app: tuple[FastAPI, TestClient], name: str
) -> None:
    cls = ERRORS[name]
    _, client = raising_app
    resp = client.get(f"/test-raise/{name}", headers={"X-Request-ID": REQUEST_ID})
    code, status = getattr(cls, "code"), int(getattr(cls, "status"))  # noqa: B009 - class attributes
    assert resp.status_code == status
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body == {
        "type": f"urn:telemed:problem:{code}",
        "title": getattr(cls, "title"),  # noqa: B009
        "status": status,
        "detail": "Something specific went wrong",
        "code": code,
        "instance": "/test-raise/{name}",  # the route's template: no value from the path
        "request_id": REQUEST_ID,
    }
    assert resp.headers["x-request-id"] == REQUEST_ID
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"


def test_every_code_is_snake_case_and_the_tree_is_documented() -> None:
    documented = Path(__file__).resolve().parents[2].joinpath("docs", "errors.md").read_text()
    for cls in _tree(TelemedError):
        code = getattr(cls, "code")  # noqa: B009
        assert code.replace("_", "").isalpha() and code == code.lower(), cls
        if cls.__module__ in ("server.errors", "server.security.jwt"):
            assert f"`{code}`" in documented, f"{code} is missing from docs/errors.md"


def test_an_unexpected_error_is_a_500_problem_that_leaks_nothing_and_is_logged_with_the_request_id(
    raising_app: tuple[FastAPI, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = raising_app
    caplog.set_level(logging.INFO)
    resp = client.get("/test-bug", headers={"X-Request-ID": REQUEST_ID})
    assert resp.status_code == 500
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert (body["code"], body["status"], body["request_id"]) == ("internal_error", 500, REQUEST_ID)
    assert "hunter2" not in resp.text and "RuntimeError" not in resp.text
    assert resp.headers["x-request-id"] == REQUEST_ID
    # The one log line an operator needs: the traceback, findable by the id the caller reports.
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "telemed.errors"]
    assert [(line["msg"], line.get("request_id")) for line in lines] == [("unhandled error", REQUEST_ID)]
    assert "RuntimeError" in lines[0]["traceback"]
