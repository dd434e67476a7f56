"""The rooms staff can book: active room endpoints only, in a stable order, and nothing else about them.

On both databases (``client`` runs on SQLite and on PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from server.identity.models import Role
from server.services import Services
from tests.server.devices.helpers import admin_headers, attest, enrol, proof_headers
from tests.server.factories import add_user, bearer, login

ROOMS = "http://testserver/api/v1/rooms"


def rooms(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/rooms", headers=headers)
    assert resp.status_code == 200, resp.text
    body: list[dict[str, Any]] = resp.json()
    return body


def clinician(client: TestClient, services: Services, username: str = "doctor") -> dict[str, str]:
    add_user(services, username)
    return bearer(login(client, username)["access_token"])


def test_active_rooms_by_establishment_then_name_and_nothing_else(
    client: TestClient, services: Services
) -> None:
    admin = admin_headers(client, services)
    enrol(client, admin, "room-z", "room_endpoint", display_name="Annex room", establishment="HMP Zeta")
    enrol(client, admin, "room-b2", "room_endpoint", display_name="treatment room", establishment="HMP Alpha")
    enrol(client, admin, "room-b1", "room_endpoint", display_name="Healthcare 1", establishment="HMP Alpha")
    enrol(client, admin, "room-bare", "room_endpoint", display_name="", establishment="HMP Alpha")
    enrol(client, admin, "room-nowhere", "room_endpoint", display_name="Mobile cart", establishment=None)
    enrol(client, admin, "laptop-01", display_name="Laptop", establishment="HMP Alpha")

    listed = rooms(client, clinician(client, services))
    assert listed == [
        {"id": "room-b1", "display_name": "Healthcare 1", "establishment": "HMP Alpha"},
        # No display name: shown (and sorted) by its id.
        {"id": "room-bare", "display_name": "room-bare", "establishment": "HMP Alpha"},
        {"id": "room-b2", "display_name": "treatment room", "establishment": "HMP Alpha"},
        {"id": "room-z", "display_name": "Annex room", "establishment": "HMP Zeta"},
        # No establishment: after every establishment, on both databases.
        {"id": "room-nowhere", "display_name": "Mobile cart", "establishment": None},
    ]
    assert rooms(client, admin) == listed


def test_revoked_rooms_are_not_listed(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    enrol(client, admin, "room-01", "room_endpoint", display_name="Room one")
    enrol(client, admin, "room-02", "room_endpoint", display_name="Room two")
    doctor = clinician(client, services)
    assert [r["id"] for r in rooms(client, doctor)] == ["room-01", "room-02"]

    revoked = client.post("/api/v1/devices/room-01/revoke", json={"reason": "stolen"}, headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert [r["id"] for r in rooms(client, doctor)] == ["room-02"]


def test_no_rooms_is_an_empty_list(client: TestClient, services: Services) -> None:
    assert rooms(client, clinician(client, services)) == []


def test_only_signed_in_staff_may_list_rooms(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "room-01", "room_endpoint", display_name="Room one")

    anonymous = client.get("/api/v1/rooms")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["code"] == "authentication_required"

    # A room endpoint has a posture token, not a user's access token: that is no sign-in.
    attested = attest(client, "room-01", key, kind="room_endpoint")
    assert attested.status_code == 200, attested.text
    posture = attested.json()
    as_room = client.get(
        "/api/v1/rooms", headers=proof_headers(key, posture["posture_token"], posture["token_jti"], url=ROOMS)
    )
    assert as_room.status_code == 401 and as_room.json()["code"] == "authentication_required"
    as_bearer = client.get("/api/v1/rooms", headers=bearer(posture["posture_token"]))
    assert as_bearer.status_code == 401 and "Room one" not in as_bearer.text

    add_user(services, "consultant", role=Role.SPECIALIST)
    specialist = client.get("/api/v1/rooms", headers=bearer(login(client, "consultant")["access_token"]))
    assert specialist.status_code == 403 and specialist.json()["code"] == "access_denied"
