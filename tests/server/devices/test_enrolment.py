"""Enrolling, listing and revoking devices through the admin API — on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from device_policy.keys import b64url_encode, generate_device_key, key_thumbprint
from server.services import Services
from tests.server.devices.helpers import MODEM_IDS, admin_headers, enrol, enrol_body
from tests.server.factories import add_user, bearer, login

PROBLEM = "application/problem+json"


def test_admin_enrols_a_laptop_and_sees_its_thumbprint(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = generate_device_key()
    resp = client.post("/api/v1/devices", json=enrol_body("laptop-01", key), headers=admin)
    assert resp.status_code == 201, resp.text
    device = resp.json()
    assert device["id"] == "laptop-01" and device["kind"] == "prison_laptop"
    assert device["status"] == "active" and device["revoked_at"] is None
    assert device["key_thumbprint"] == key_thumbprint(key.public_key())
    assert {k: device[k] for k in MODEM_IDS} == MODEM_IDS
    assert device["type_approval"] == "TA-2026-0042" and device["establishment"] == "HMP Example"
    listed = client.get("/api/v1/devices", headers=admin).json()
    assert [d["id"] for d in listed] == ["laptop-01"]
    one = client.get("/api/v1/devices/laptop-01", headers=admin)
    assert one.status_code == 200 and one.json()["serial"] == "SN-laptop-01"


def test_public_key_must_be_an_ed25519_key(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = generate_device_key()
    for bad in ("not base64url!", b64url_encode(b"\x01" * 31), b64url_encode(b"\x01" * 33), "AAAA===="):
        resp = client.post(
            "/api/v1/devices", json=enrol_body("laptop-01", key, public_key=bad), headers=admin
        )
        assert resp.status_code == 400, bad
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["code"] == "invalid_key"
    assert client.get("/api/v1/devices", headers=admin).json() == []


def test_duplicate_id_and_reused_key_are_refused(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    dup = client.post("/api/v1/devices", json=enrol_body("laptop-01", generate_device_key()), headers=admin)
    assert dup.status_code == 409 and dup.json()["code"] == "already_exists"
    assert "laptop-01" in dup.json()["detail"]
    same_key = client.post("/api/v1/devices", json=enrol_body("laptop-02", key), headers=admin)
    assert same_key.status_code == 409 and same_key.json()["code"] == "already_exists"
    assert "already enrolled for device" in same_key.json()["detail"]


def test_enrolment_fields_are_validated(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = generate_device_key()
    cases = {
        "imei": enrol_body("laptop-01", key, imei="12345"),
        "iccid": enrol_body("laptop-01", key, iccid="89-44"),
        "kind": enrol_body("laptop-01", key, kind="toaster"),
        "id": enrol_body("me", key),
    }
    for field, body in cases.items():
        resp = client.post("/api/v1/devices", json=body, headers=admin)
        assert resp.status_code == 422, field
        assert resp.json()["code"] == "validation_error"
        assert field in resp.json()["errors"][0]["loc"]


def test_only_admins_enrol_list_and_revoke(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    enrol(client, admin, "laptop-01")
    add_user(services, "alice")
    clinician = bearer(login(client, "alice")["access_token"])
    body = enrol_body("laptop-02", generate_device_key())
    for method, url, kwargs in (
        ("POST", "/api/v1/devices", {"json": body}),
        ("GET", "/api/v1/devices", {}),
        ("GET", "/api/v1/devices/laptop-01", {}),
        ("POST", "/api/v1/devices/laptop-01/revoke", {}),
        ("GET", "/api/v1/device-checks", {}),
    ):
        denied = client.request(method, url, headers=clinician, **kwargs)
        assert denied.status_code == 403 and denied.json()["code"] == "access_denied", url
        anonymous = client.request(method, url, **kwargs)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "authentication_required", url
    assert client.get("/api/v1/devices/laptop-01", headers=admin).json()["status"] == "active"


def test_revocation_is_recorded_once(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    enrol(client, admin, "laptop-01")
    resp = client.post("/api/v1/devices/laptop-01/revoke", json={"reason": "lost in transit"}, headers=admin)
    assert resp.status_code == 200
    assert resp.json()["status"] == "revoked" and resp.json()["revoked_at"] is not None
    again = client.post("/api/v1/devices/laptop-01/revoke", headers=admin)
    assert again.status_code == 409 and again.json()["code"] == "invalid_state"
    assert again.json()["detail"] == 'Cannot revoke a device in state "revoked"'
    assert [d["id"] for d in client.get("/api/v1/devices?status=revoked", headers=admin).json()] == [
        "laptop-01"
    ]
    assert client.get("/api/v1/devices?status=active", headers=admin).json() == []
    missing = client.post("/api/v1/devices/nope-01/revoke", headers=admin)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
