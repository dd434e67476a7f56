"""What docs/records.md (patients) and docs/identity.md (GET /api/v1/me) promise, checked."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from server.identity.models import Role
from server.services import Services
from tests.server.factories import add_user, bearer, login

PATIENT = {
    "prison_number": "a1234bc",
    "name": " Sam Example ",
    "date_of_birth": "1980-02-29",
    "establishment": "HMP Example",
}


def test_register_a_patient_as_documented(client: TestClient, services: Services) -> None:
    add_user(services, "admin.one", Role.ADMIN)
    add_user(services, "gp.one", Role.CLINICIAN)
    admin = bearer(login(client, "admin.one")["access_token"])
    gp = bearer(login(client, "gp.one")["access_token"])

    created = client.post("/api/v1/patients", json=PATIENT | {"nickname": "ignored"}, headers=admin)

    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "prison_number", "name", "date_of_birth", "establishment"}
    assert (body["prison_number"], body["name"], body["date_of_birth"]) == (
        "A1234BC",
        "Sam Example",
        "1980-02-29",
    )
    again = client.post("/api/v1/patients", json=PATIENT | {"prison_number": "A1234BC"}, headers=admin)
    assert (again.status_code, again.json()["code"]) == (409, "already_exists")
    missing = client.post("/api/v1/patients", json={"name": "X"}, headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (422, "validation_error")
    assert {tuple(e["loc"]) for e in missing.json()["errors"]} == {
        ("body", "prison_number"),
        ("body", "date_of_birth"),
        ("body", "establishment"),
    }
    bad = client.post("/api/v1/patients", json=PATIENT | {"prison_number": "A 1"}, headers=admin)
    assert bad.status_code == 422
    assert [e["loc"] for e in bad.json()["errors"]] == [["body", "prison_number"]]
    refused = client.post("/api/v1/patients", json=PATIENT, headers=gp)
    assert (refused.status_code, refused.json()["code"]) == (403, "access_denied")
    anonymous = client.post("/api/v1/patients", json=PATIENT)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "authentication_required")


def test_me_returns_exactly_the_documented_fields(client: TestClient, services: Services) -> None:
    user_id = add_user(services, "gp.two", Role.CLINICIAN, display_name="Dr Two", establishment="HMP Example")
    token = login(client, "gp.two")["access_token"]

    me = client.get("/api/v1/me", headers=bearer(token))

    assert me.status_code == 200
    body = me.json()
    assert set(body) == {"id", "username", "display_name", "role", "establishment", "disabled", "created_at"}
    assert (body["id"], body["username"], body["display_name"], body["role"]) == (
        user_id,
        "gp.two",
        "Dr Two",
        "clinician",
    )
    assert (body["establishment"], body["disabled"]) == ("HMP Example", False)
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    assert client.get("/api/v1/me").json()["code"] == "authentication_required"
    assert client.get("/api/v1/me", headers=bearer("x.y.z")).json()["code"] == "invalid_token"


def test_me_refuses_a_token_meant_for_another_service(client: TestClient, services: Services) -> None:
    user_id = add_user(services, "gp.three", Role.CLINICIAN)
    posture_like = services.jwt.issue(subject=user_id, audience="telemed-posture", ttl=timedelta(minutes=5))

    refused = client.get("/api/v1/me", headers=bearer(posture_like))

    assert (refused.status_code, refused.json()["code"]) == (401, "wrong_audience")
