"""A revoked device is refused with an audit entry: at a challenge and when its posture is used."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi.testclient import TestClient

from records.audit.chain import AuditEntry
from records.audit.log import iter_entries
from server.consultations import service as consultations
from server.db import session_scope, utcnow
from server.identity.models import Role
from server.services import Services
from tests.server.consultations.conftest import add_patient
from tests.server.devices.helpers import admin_headers, attest, enrol, proof_headers
from tests.server.factories import add_user, bearer, login


def _entries(services: Services, action: str) -> list[AuditEntry]:
    with session_scope(services.engine) as session:
        return [e for e in iter_entries(session=session) if e.action == action]


def test_a_challenge_for_a_revoked_device_is_refused_and_audited(
    client: TestClient, services: Services
) -> None:
    admin = admin_headers(client, services)
    enrol(client, admin, "laptop-01")
    assert client.post("/api/v1/devices/laptop-01/revoke", headers=admin).status_code == 200

    refused = client.post("/api/v1/devices/laptop-01/challenge", headers={"X-Request-ID": "req-challenge-1"})
    assert refused.status_code == 403 and refused.json()["code"] == "device_revoked"
    unknown = client.post("/api/v1/devices/nobody-01/challenge")
    assert unknown.status_code == 401 and unknown.json()["code"] == "unknown_device"

    [entry] = _entries(services, "device.challenge")
    assert (entry.outcome, entry.actor_id, entry.actor_role, entry.device_id) == (
        "denied",
        "laptop-01",
        "device",
        "laptop-01",
    )
    assert entry.detail["reason"] == "device_revoked"
    assert entry.request_id == "req-challenge-1" and entry.ip == "testclient"


def test_a_host_join_token_with_a_revoked_laptops_posture_is_refused_and_audited(
    client: TestClient, services: Services
) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    passed = attest(client, "laptop-01", key).json()
    token, jti = passed["posture_token"], passed["token_jti"]
    host_id = add_user(services, "doctor", role=Role.CLINICIAN)
    with session_scope(services.engine) as session:
        start = utcnow() + timedelta(minutes=5)
        cid = consultations.schedule_consultation(
            session=session,
            patient_id=add_patient(services),
            host_user_id=host_id,
            room_device_id=None,
            specialist=("Dr Specialist", None),
            start=start,
            end=start + timedelta(hours=1),
            created_by=host_id,
        ).id
    assert client.post("/api/v1/devices/laptop-01/revoke", headers=admin).status_code == 200

    url = f"http://testserver/api/v1/consultations/{cid}/join-token"
    headers = {
        **bearer(login(client, "doctor")["access_token"]),
        **proof_headers(key, token, jti, method="POST", url=url),
        "X-Request-ID": "req-join-token-1",
    }
    refused = client.post(url, headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "device_revoked"

    [entry] = _entries(services, "device.posture")
    assert (entry.outcome, entry.device_id, entry.authority_jti) == ("denied", "laptop-01", jti)
    assert entry.detail["reason"] == "device_revoked"
    assert entry.request_id == "req-join-token-1" and entry.ip == "testclient"
    assert token not in json.dumps(entry.to_export())
    # No join token was issued.
    assert not [e for e in _entries(services, "consultation.join_token_issued") if e.outcome == "success"]
