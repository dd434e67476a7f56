"""Paging and filter parameters of the records and audit lists: out-of-range or empty values,
tokens and naive times are a 422 with a code, never a 500 — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from server.identity.models import Role
from server.services import Services
from tests.server.factories import add_user, bearer, login

PROBLEM = "application/problem+json"
JWT_SHAPED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
AUDIT_LISTS = ["entries", "outside-consultation", "device-checks/failed", "patients/p1/accesses"]
PAGED = ["/api/v1/patients", "/api/v1/audit/break-glass"]


@pytest.fixture
def admin(client: TestClient, services: Services) -> dict[str, str]:
    add_user(services, "params-admin", Role.ADMIN)
    return bearer(login(client, "params-admin")["access_token"])


def _refused(resp_status: int, body: dict[str, object], content_type: str, code: str, where: str) -> None:
    assert resp_status == 422, body
    assert content_type == PROBLEM
    assert body["code"] == code
    if code == "validation_error":
        errors = body["errors"]
        assert isinstance(errors, list)
        assert [where in e["loc"] for e in errors] == [True]


@pytest.mark.parametrize("path", PAGED)
def test_an_offset_out_of_range_is_a_422_and_the_largest_is_an_empty_page(
    client: TestClient, admin: dict[str, str], path: str
) -> None:
    for offset in ["256215084247846682624", "13184636533362632", str(2**31), "-1"]:
        resp = client.get(path, params={"offset": offset}, headers=admin)
        _refused(resp.status_code, resp.json(), resp.headers["content-type"], "validation_error", "offset")
    resp = client.get(path, params={"offset": str(2**31 - 1)}, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json() == []


BAD_FILTERS = [
    ("patient_id", ""),
    ("actor_id", ""),
    ("device_id", JWT_SHAPED),
    ("actor_id", f"x{JWT_SHAPED}"),
    ("authority_jti", JWT_SHAPED),
    ("authority_jti", ""),
    ("category", "Not-A-Category"),
    ("action", JWT_SHAPED),
    ("from", "2024-01-01T00:00:00"),  # no UTC offset
    ("to", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
]


@pytest.mark.parametrize("path", AUDIT_LISTS)
def test_a_bad_filter_is_a_422_naming_it(client: TestClient, admin: dict[str, str], path: str) -> None:
    for param, value in BAD_FILTERS:
        resp = client.get(f"/api/v1/audit/{path}", params={param: value}, headers=admin)
        _refused(resp.status_code, resp.json(), resp.headers["content-type"], "validation_error", param)
        assert "eyJ" not in resp.text  # the refused value is never echoed


def test_a_token_as_the_patient_in_the_path_is_a_422(client: TestClient, admin: dict[str, str]) -> None:
    resp = client.get(f"/api/v1/audit/patients/{JWT_SHAPED}/accesses", headers=admin)
    _refused(resp.status_code, resp.json(), resp.headers["content-type"], "validation_error", "patient")


def _cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_a_forged_cursor_with_an_out_of_range_position_is_invalid_cursor(
    client: TestClient, admin: dict[str, str]
) -> None:
    for seq in [2**64, -1, 2**53]:
        cursor = _cursor({"s": "seq", "t": "2024-01-01T00:00:00.000000Z", "q": seq})
        resp = client.get("/api/v1/audit/entries", params={"cursor": cursor, "sort": "seq"}, headers=admin)
        _refused(resp.status_code, resp.json(), resp.headers["content-type"], "invalid_cursor", "cursor")


def test_valid_filters_still_answer(client: TestClient, admin: dict[str, str]) -> None:
    params = {
        "authority_jti": "Zm9vYmFyLWJhei1xdXV4",
        "category": ["grant", "document"],
        "action": "grant.issue",
        "purpose_of_use": "TREAT",
        "from": "2024-01-01T00:00:00Z",
        "to": "2999-01-01T00:00:00+02:00",
        "sort": "seq",
    }
    resp = client.get("/api/v1/audit/entries", params=params, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"entries": [], "next_cursor": None}
