"""The admin audit API: who accessed a patient, failed device checks, paging, FHIR — on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.services import Services
from tests.server.devices.helpers import attest, collected_facts
from tests.server.records_fixtures import Ward, build_ward, claims_of


@pytest.fixture
def ward(client: TestClient, services: Services) -> Ward:
    return build_ward(client, services)


def _get(ward: Ward, path: str, **params: Any) -> Any:
    resp = ward.client.get(f"/api/v1/audit/{path}", params=params, headers=ward.admin)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_who_accessed_a_patient_allowed_and_denied(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}/content", grant)
    ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant, device=ward.laptop2)
    entries = _get(ward, f"patients/{ward.patient_a}/accesses", sort="seq")["entries"]
    assert all(e["patient_id"] == ward.patient_a for e in entries)
    seen = [(e["action"], e["outcome"], e["actor_id"]) for e in entries if e["actor_role"] == "clinician"]
    assert seen == [
        ("grant.issue", "allowed", ward.host_id),
        ("document.read", "allowed", ward.host_id),
        ("grant.use", "denied", ward.host_id),
    ]
    assert _get(ward, f"patients/{ward.patient_b}/accesses", actor_id=ward.host_id)["entries"] == []


def test_pages_never_skip_or_repeat_and_follow_the_sort(ward: Ward) -> None:
    everything = _get(ward, "entries", limit=500, sort="seq")["entries"]
    seqs: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, "sort": "-ts"}
        if cursor:
            params["cursor"] = cursor
        page = _get(ward, "entries", **params)
        seqs += [e["seq"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The queries themselves are audited while paging; the snapshot taken first is fully covered.
    assert {e["seq"] for e in everything} <= set(seqs)
    assert len(seqs) == len(set(seqs))
    assert seqs == sorted(seqs, reverse=True)
    bad = ward.client.get(
        "/api/v1/audit/entries", params={"cursor": "garbage!", "limit": 2}, headers=ward.admin
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"


def test_failed_device_checks_are_listed(ward: Ward) -> None:
    failing = collected_facts("sim-pin-off", device_id="laptop-02")
    assert attest(ward.client, "laptop-02", ward.laptop2.key, facts=failing).status_code != 200
    entries = _get(ward, "device-checks/failed")["entries"]
    assert [(e["action"], e["device_id"]) for e in entries] == [("device.check", "laptop-02")]
    assert entries[0]["outcome"] in ("failure", "denied")


def test_fhir_export_of_any_query_pages_with_a_next_link(ward: Ward) -> None:
    bundle = _get(ward, "entries", format="fhir", limit=2, sort="seq")
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 2
    assert [link["relation"] for link in bundle["link"]] == ["self", "next"]
    assert all(item["resource"]["resourceType"] == "AuditEvent" for item in bundle["entry"])
    assert bundle["entry"][0]["fullUrl"].startswith("http://127.0.0.1:8000/fhir/AuditEvent/")


def test_only_admins_read_the_audit_log_and_their_reading_is_audited(ward: Ward) -> None:
    for path in ("entries", f"patients/{ward.patient_a}/accesses", "break-glass", "verify"):
        resp = ward.client.get(f"/api/v1/audit/{path}", headers=ward.host)
        assert resp.status_code == 403 and resp.json()["code"] == "access_denied", path
    refused = _get(ward, "entries", action="records.admin", sort="seq")["entries"]
    assert [(e["actor_id"], e["outcome"]) for e in refused] == [(ward.host_id, "denied")] * 4
    assert refused[0]["detail"]["path"] == "/api/v1/audit/entries"
    _get(ward, "entries", patient_id=ward.patient_a)
    queries = _get(ward, "entries", action="audit.query")["entries"]
    assert any(q["detail"]["filters"].get("patient_id") == ward.patient_a for q in queries)


def test_the_stored_log_verifies_against_the_pinned_key(ward: Ward) -> None:
    key = _get(ward, "public-key")
    assert key["key_id"].startswith("ed25519:") and "BEGIN PUBLIC KEY" in key["public_key_pem"]
    ward.services.records.checkpoint()  # type: ignore[union-attr]
    report = _get(ward, "verify")
    assert report["ok"] is True and report["entries_checked"] == report["head_seq"] > 10
    assert report["checkpoints_checked"] >= 1
    latest = _get(ward, "checkpoints/latest")
    assert latest["key_id"] == key["key_id"]


def test_every_decision_says_who_on_what_authority_from_where(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    jti = claims_of(grant)["jti"]
    allowed = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}/content", grant)
    denied = ward.use("GET", f"/api/v1/records/documents/{ward.doc_b}/content", grant)
    assert (allowed.status_code, denied.status_code) == (200, 404)
    reads = {e["request_id"]: e for e in _get(ward, "entries", action="document.read")["entries"]}
    for resp, outcome, doc in ((allowed, "allowed", ward.doc_a), (denied, "denied", ward.doc_b)):
        entry = reads[resp.headers["x-request-id"]]
        assert entry["ts"] and entry["outcome"] == outcome
        assert (entry["actor_id"], entry["actor_role"]) == (ward.host_id, "clinician")
        assert entry["authority_jti"] == jti
        assert entry["patient_id"] == ward.patient_a and entry["data"]["document_ids"] == [doc]
        assert entry["consultation_id"] == ward.consultation and entry["purpose_of_use"] == "TREAT"
        assert (entry["device_id"], entry["ip"], entry["establishment"]) == (
            "laptop-01",
            "testclient",
            "HMP Example",
        )
    # The authority is named by its jti: no token is ever written to the log.
    everything = str(_get(ward, "entries", limit=500)["entries"])
    for token in (grant, ward.laptop.token, ward.host["Authorization"].split()[1]):
        assert token not in everything and token.split(".")[1] not in everything


def test_every_filter_and_sort_order_narrows_the_log(ward: Ward) -> None:
    start = _get(ward, "entries", sort="-seq", limit=1)["entries"][0]["ts"]
    grant = ward.grant()["grant"]
    jti = claims_of(grant)["jti"]
    ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant)
    ward.use("GET", f"/api/v1/records/documents/{ward.doc_b}", grant)
    ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant, device=ward.laptop2)

    def seqs(**params: Any) -> list[int]:
        return [e["seq"] for e in _get(ward, "entries", limit=500, **params)["entries"]]

    mine = _get(ward, "entries", authority_jti=jti, sort="seq", limit=500)["entries"]
    assert [(e["action"], e["outcome"]) for e in mine] == [
        ("grant.issue", "allowed"),
        ("document.view", "allowed"),
        ("document.view", "denied"),
        ("grant.use", "denied"),
    ]
    assert {e["purpose_of_use"] for e in mine} == {"TREAT"}  # refusals too
    assert seqs(authority_jti=jti, sort="ts") == [e["seq"] for e in mine]
    assert seqs(authority_jti=jti, sort="-seq") == [e["seq"] for e in reversed(mine)]
    assert seqs(authority_jti=jti, outcome="denied") == [mine[3]["seq"], mine[2]["seq"]]
    assert seqs(authority_jti=jti, outcome=["allowed", "denied"]) == seqs(authority_jti=jti)
    assert seqs(authority_jti=jti, category="document") == [mine[2]["seq"], mine[1]["seq"]]
    assert seqs(authority_jti=jti, category=["document", "grant"]) == seqs(authority_jti=jti)
    assert set(seqs(consultation_id=ward.consultation, purpose_of_use="TREAT")) >= {e["seq"] for e in mine}
    assert seqs(device_id="laptop-01", authority_jti=jti) == seqs(authority_jti=jti)
    assert seqs(device_id="laptop-02", authority_jti=jti) == []
    assert seqs(purpose_of_use="ETREAT") == []
    # A time window: from (inclusive) the first entry of this test, to (exclusive) the grant's issue.
    window = seqs(**{"from": start, "to": mine[0]["ts"], "sort": "seq"})
    assert window and window[-1] == mine[0]["seq"] - 1
    assert all(e["ts"] >= start for e in _get(ward, "entries", **{"from": start, "limit": 500})["entries"])
