"""Record grants: who gets one, what it says, and every way using one is refused — on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from server.consultations.models import Consultation
from server.db import session_scope
from server.services import Services
from tests.server.devices.helpers import attest, collected_facts
from tests.server.records_fixtures import Ward, build_ward, claims_of, problem


@pytest.fixture
def ward(client: TestClient, services: Services) -> Ward:
    return build_ward(client, services)


def test_the_host_on_a_compliant_laptop_gets_a_short_grant_bound_to_the_device_key(ward: Ward) -> None:
    body = ward.grant()
    claims = claims_of(body["grant"])
    assert claims["aud"] == "telemed-records"
    assert claims["sub"] == ward.host_id
    assert claims["patient"] == ward.patient_a == body["patient_id"]
    assert claims["consultation"] == ward.consultation == body["consultation_id"]
    assert claims["scope"] == "documents:read notes:write"
    assert claims["cnf"] == {"jkt": claims_of(ward.laptop.token)["cnf"]["jkt"]}
    assert claims["jti"] == body["jti"] and claims["purpose"] == "TREAT"
    assert 0 < claims["exp"] - claims["iat"] <= 300
    listed = ward.use("GET", f"/api/v1/records/patients/{ward.patient_a}/documents", body["grant"])
    assert listed.status_code == 200, listed.text
    assert {d["id"] for d in listed.json()} == {ward.doc_a, ward.doc_a2}
    assert listed.headers["cache-control"] == "no-store"


def test_a_grant_never_outlives_the_consultation_s_scheduled_end(ward: Ward) -> None:
    cid = ward.book(ward.patient_a, minutes_left=2)
    ward.go_live(cid)
    claims = claims_of(ward.grant(cid)["grant"])
    with session_scope(ward.services.engine) as session:
        consultation = session.get(Consultation, cid)
        assert consultation is not None
        end = consultation.scheduled_end
    assert claims["exp"] <= end.timestamp()
    assert claims["exp"] - claims["iat"] < 150


def test_no_posture_token_no_grant(ward: Ward) -> None:
    resp = ward.request_grant(posture=False)
    assert resp.status_code == 403 and resp.json()["code"] == "no_posture"


def test_a_posture_token_with_a_proof_by_another_key_gets_no_grant(ward: Ward) -> None:
    path = "/api/v1/records/grants"
    headers = {
        **ward.host,
        "X-Posture-Token": ward.laptop.token,
        "X-Posture-Proof": ward.laptop2.proof("POST", path, ward.laptop.jti),
    }
    resp = ward.client.post(path, json={"consultation_id": ward.consultation}, headers=headers)
    assert resp.status_code == 403 and resp.json()["code"] == "no_posture"
    assert "key_binding_mismatch" in resp.json()["detail"]


def test_only_the_host_gets_a_grant_and_a_missing_consultation_looks_the_same(ward: Ward) -> None:
    other = ward.request_grant(headers=ward.nurse)
    missing = ward.request_grant("no-such-consultation")
    assert other.status_code == missing.status_code == 403
    assert other.json()["code"] == "not_host"
    assert problem(other) == problem(missing)


def test_a_room_endpoint_never_gets_a_grant(ward: Ward) -> None:
    resp = ward.request_grant(device=ward.room)
    assert resp.status_code == 403 and resp.json()["code"] == "room_endpoint_forbidden"


def test_no_grant_before_the_consultation_is_live_or_after_it_ended(ward: Ward) -> None:
    booked = ward.book(ward.patient_b)
    early = ward.request_grant(booked)
    assert early.status_code == 409 and early.json()["code"] == "consultation_not_live"
    assert '"scheduled"' in early.json()["detail"]
    ward.end(ward.consultation)
    late = ward.request_grant()
    assert late.status_code == 409 and '"ended"' in late.json()["detail"]


def test_a_grant_is_for_its_patient_only(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    other = ward.use("GET", f"/api/v1/records/patients/{ward.patient_b}/documents", grant)
    missing = ward.use("GET", "/api/v1/records/patients/no-such-patient/documents", grant)
    assert other.status_code == missing.status_code == 404
    assert problem(other) == problem(missing)
    doc = ward.use("GET", f"/api/v1/records/documents/{ward.doc_b}", grant)
    assert doc.status_code == 404 and doc.json()["code"] == "not_found"


def test_ending_the_consultation_revokes_its_grants_at_once(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    assert ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant).status_code == 200
    ward.end(ward.consultation)
    resp = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant)
    assert resp.status_code == 401 and resp.json()["code"] == "grant_revoked"


def test_an_expired_grant_is_refused(ward: Ward) -> None:
    # Signed by the server's own key with every claim right, but its time has passed.
    live = claims_of(ward.grant()["grant"])
    expired = ward.services.jwt.issue(
        subject=ward.host_id,
        audience="telemed-records",
        ttl=timedelta(minutes=1),
        not_before=datetime.now(UTC) - timedelta(minutes=10),
        claims={k: live[k] for k in ("patient", "consultation", "cnf", "scope", "purpose", "kind", "device")},
    )
    resp = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", expired)
    assert resp.status_code == 401 and resp.json()["code"] == "grant_expired"


def test_a_token_for_another_audience_is_not_a_grant(ward: Ward) -> None:
    for token in (ward.laptop.token, ward.host["Authorization"].split()[1]):
        resp = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", token)
        assert resp.status_code == 401 and resp.json()["code"] == "wrong_audience"


def test_a_grant_used_with_another_device_key_is_refused(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    path = f"/api/v1/records/documents/{ward.doc_a}"
    stolen = ward.use("GET", path, grant, device=ward.laptop2)
    assert stolen.status_code == 401 and stolen.json()["code"] == "key_binding_mismatch"
    bare = ward.use("GET", path, grant, proof=False)
    assert bare.status_code == 401 and bare.json()["code"] == "key_binding_mismatch"
    assert ward.use("GET", path, grant).status_code == 200


def test_a_proof_is_good_for_one_request(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    path = f"/api/v1/records/documents/{ward.doc_a}"
    headers = {
        **ward.host,
        "X-Record-Grant": grant,
        "X-Posture-Proof": ward.laptop.proof("GET", path, claims_of(grant)["jti"]),
    }
    assert ward.client.get(path, headers=headers).status_code == 200
    replay = ward.client.get(path, headers=headers)
    assert replay.status_code == 401 and replay.json()["code"] == "grant_invalid"


def test_a_grant_works_only_for_the_user_it_names(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    resp = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant, headers=ward.nurse)
    assert resp.status_code == 401 and resp.json()["code"] == "grant_invalid"


def test_renewal_while_live_replaces_the_grant_on_the_same_device(ward: Ward) -> None:
    old = ward.grant()["grant"]
    path = "/api/v1/records/grants/renew"
    other_device = ward.client.post(
        path, headers={**ward.host, "X-Record-Grant": old, **ward.laptop2.posture("POST", path)}
    )
    assert other_device.status_code == 401 and other_device.json()["code"] == "key_binding_mismatch"
    renewed = ward.client.post(
        path, headers={**ward.host, "X-Record-Grant": old, **ward.laptop.posture("POST", path)}
    )
    assert renewed.status_code == 200, renewed.text
    new = renewed.json()["grant"]
    assert claims_of(new)["jti"] != claims_of(old)["jti"]
    doc = f"/api/v1/records/documents/{ward.doc_a}"
    assert ward.use("GET", doc, new).status_code == 200
    assert ward.use("GET", doc, old).json()["code"] == "grant_revoked"
    ward.end(ward.consultation)
    after = ward.client.post(
        path, headers={**ward.host, "X-Record-Grant": new, **ward.laptop.posture("POST", path)}
    )
    assert after.status_code == 401 and after.json()["code"] == "grant_revoked"


def test_every_grant_decision_is_in_the_audit_log(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    ward.request_grant(headers=ward.nurse)
    ward.request_grant(device=ward.room)
    ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant, device=ward.laptop2)
    issued = ward.audit(action="grant.issue")
    outcomes = sorted((e["outcome"], e["detail"].get("reason", "")) for e in issued)
    assert outcomes == [("allowed", ""), ("denied", "not_host"), ("denied", "room_endpoint_forbidden")]
    allowed = next(e for e in issued if e["outcome"] == "allowed")
    assert allowed["authority_jti"] == claims_of(grant)["jti"] and allowed["device_id"] == "laptop-01"
    assert allowed["patient_id"] == ward.patient_a and allowed["purpose_of_use"] == "TREAT"
    used = ward.audit(action="grant.use", outcome="denied")
    assert [e["detail"]["reason"] for e in used] == ["key_binding_mismatch"]
    assert grant not in str(ward.audit())


def test_an_admin_revokes_one_grant_at_once(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    jti = claims_of(grant)["jti"]
    doc = f"/api/v1/records/documents/{ward.doc_a}"
    path = f"/api/v1/records/grants/{jti}/revoke"
    not_admin = ward.client.post(path, json={"reason": "mine"}, headers=ward.host)
    assert not_admin.status_code == 403
    assert ward.use("GET", doc, grant).status_code == 200
    unknown = ward.client.post("/api/v1/records/grants/no-such-jti/revoke", json={}, headers=ward.admin)
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    done = ward.client.post(path, json={"reason": "lost laptop"}, headers=ward.admin)
    assert done.status_code == 204, done.text
    resp = ward.use("GET", doc, grant)
    assert resp.status_code == 401 and resp.json()["code"] == "grant_revoked"
    assert "lost laptop" in resp.json()["detail"]
    [entry] = [e for e in ward.audit(action="grant.revoke") if e["authority_jti"] == jti]
    assert entry["detail"]["reason"] == "lost laptop" and entry["patient_id"] == ward.patient_a


def test_revoking_the_device_revokes_its_grants_at_once(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    doc = f"/api/v1/records/documents/{ward.doc_a}"
    assert ward.use("GET", doc, grant).status_code == 200
    assert ward.client.post("/api/v1/devices/laptop-01/revoke", headers=ward.admin).status_code == 200
    resp = ward.use("GET", doc, grant)
    assert resp.status_code == 401 and resp.json()["code"] == "grant_revoked"
    assert "device_revoked" in resp.json()["detail"]
    revoked = [e for e in ward.audit(action="grant.revoke") if e["authority_jti"] == claims_of(grant)["jti"]]
    assert [(e["device_id"], e["detail"]["reason"]) for e in revoked] == [("laptop-01", "device_revoked")]


def test_a_device_that_fails_its_posture_check_loses_its_grants_and_its_earlier_token(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    doc = f"/api/v1/records/documents/{ward.doc_a}"
    off = collected_facts("firewall-off", device_id="laptop-01")
    failed = attest(ward.client, "laptop-01", ward.laptop.key, facts=off)
    assert failed.status_code == 403 and failed.json()["code"] == "policy_failed"
    resp = ward.use("GET", doc, grant)
    assert resp.status_code == 401 and resp.json()["code"] == "grant_revoked"
    assert "policy_failed" in resp.json()["detail"]
    # The posture token of the last pass is unexpired, but it no longer vouches for the device.
    stale = ward.request_grant()
    assert stale.status_code == 403 and stale.json()["code"] == "no_posture"
    assert "invalid_posture_token" in stale.json()["detail"]
    fixed = attest(ward.client, "laptop-01", ward.laptop.key)
    assert fixed.status_code == 200, fixed.text
    ward.laptop.token, ward.laptop.jti = fixed.json()["posture_token"], fixed.json()["token_jti"]
    assert ward.use("GET", doc, ward.grant()["grant"]).status_code == 200
