"""Break-glass: a reason, a short read-only grant, a flag, and an admin's sign-off — on both databases."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.services import Services
from tests.server.records_fixtures import Device, Ward, build_ward, claims_of, problem

PATH = "/api/v1/records/break-glass"
REASON = "Collapsed in cell, unresponsive; need allergy and medication history now."


@pytest.fixture
def ward(client: TestClient, services: Services) -> Ward:
    return build_ward(client, services)


def _open(
    ward: Ward,
    patient: str,
    *,
    reason: str = REASON,
    headers: dict[str, str] | None = None,
    device: Device | None = None,
    posture: bool = True,
) -> object:
    shown = (device or ward.laptop).posture("POST", PATH) if posture else {}
    return ward.client.post(
        PATH, json={"patient_id": patient, "reason": reason}, headers={**(headers or ward.nurse), **shown}
    )


def test_break_glass_gives_a_short_emergency_read_grant_flagged_for_review(ward: Ward) -> None:
    resp = _open(ward, ward.patient_b)
    assert resp.status_code == 201, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    claims = claims_of(body["grant"])
    assert body["review_status"] == "pending"
    assert claims["purpose"] == "ETREAT" and claims["scope"] == "documents:read"
    assert claims["patient"] == ward.patient_b and claims["consultation"] is None
    assert 0 < claims["exp"] - claims["iat"] <= 15 * 60
    docs = ward.use(
        "GET", f"/api/v1/records/patients/{ward.patient_b}/documents", body["grant"], headers=ward.nurse
    )
    assert docs.status_code == 200 and [d["id"] for d in docs.json()] == [ward.doc_b]
    note = ward.use("POST", "/api/v1/records/notes", body["grant"], headers=ward.nurse, json={"text": "x"})
    assert note.status_code == 401 and note.json()["code"] == "grant_invalid"
    renew = ward.client.post(
        "/api/v1/records/grants/renew",
        headers={
            **ward.nurse,
            "X-Record-Grant": body["grant"],
            **ward.laptop.posture("POST", "/api/v1/records/grants/renew"),
        },
    )
    assert renew.status_code == 401 and renew.json()["code"] == "grant_invalid"

    queue = ward.client.get("/api/v1/audit/break-glass", params={"status": "pending"}, headers=ward.admin)
    assert queue.status_code == 200
    [pending] = queue.json()
    assert pending["id"] == body["access_id"] and pending["reason"] == REASON
    assert pending["user_id"] == ward.nurse_id and pending["grant_jti"] == claims["jti"]

    # Reads under it are visible as accesses outside any consultation, with their purpose.
    outside = ward.client.get("/api/v1/audit/outside-consultation", headers=ward.admin).json()["entries"]
    assert {(e["action"], e["purpose_of_use"]) for e in outside} >= {("document.list", "ETREAT")}


def test_an_admin_signs_off_each_access_once(ward: Ward) -> None:
    access_id = _open(ward, ward.patient_b).json()["access_id"]  # type: ignore[attr-defined]
    review = f"/api/v1/audit/break-glass/{access_id}/review"
    by_clinician = ward.client.post(review, json={"outcome": "approved", "note": "ok"}, headers=ward.host)
    assert by_clinician.status_code == 403
    done = ward.client.post(
        review, json={"outcome": "approved", "note": "Justified: emergency team called."}, headers=ward.admin
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "approved" and done.json()["reviewed_at"]
    again = ward.client.post(
        review, json={"outcome": "rejected", "note": "changed my mind"}, headers=ward.admin
    )
    assert again.status_code == 409 and again.json()["code"] == "review_closed"
    assert '"approved"' in again.json()["detail"]
    pending = ward.client.get("/api/v1/audit/break-glass", params={"status": "pending"}, headers=ward.admin)
    assert pending.json() == []
    reviews = ward.audit(action="breakglass.review")
    assert sorted(e["outcome"] for e in reviews) == ["denied", "success"]


def test_break_glass_needs_a_real_reason_a_compliant_laptop_and_a_clinician(ward: Ward) -> None:
    short = _open(ward, ward.patient_b, reason="emergency")
    assert short.status_code == 422 and short.json()["code"] == "breakglass_reason_required"  # type: ignore[attr-defined]
    bare = _open(ward, ward.patient_b, posture=False)
    assert bare.status_code == 403 and bare.json()["code"] == "no_posture"  # type: ignore[attr-defined]
    room = _open(ward, ward.patient_b, device=ward.room)
    assert room.status_code == 403 and room.json()["code"] == "room_endpoint_forbidden"  # type: ignore[attr-defined]
    # A specialist asking about a real patient and a clinician asking about nobody: the same answer.
    specialist = _open(ward, ward.patient_b, headers=ward.specialist_user)
    nobody = _open(ward, "no-such-patient")
    assert specialist.status_code == nobody.status_code == 404  # type: ignore[attr-defined]
    assert problem(specialist) == problem(nobody)  # type: ignore[arg-type]
    denied = ward.audit(action="breakglass.open", outcome="denied", sort="seq")
    assert [e["detail"]["reason"] for e in denied] == [
        "breakglass_reason_required",
        "no_posture",
        "room_endpoint_forbidden",
        "not_found",
        "not_found",
    ]
    assert ward.client.get("/api/v1/audit/break-glass", headers=ward.admin).json() == []


def test_break_glass_entries_export_as_fhir_emergency_override(ward: Ward) -> None:
    _open(ward, ward.patient_b)
    bundle = ward.client.get(
        "/api/v1/audit/entries", params={"action": "breakglass.open", "format": "fhir"}, headers=ward.admin
    ).json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] == 1
    event = bundle["entry"][0]["resource"]
    assert event["resourceType"] == "AuditEvent"
    assert {"code": "110127", "display": "Emergency Override Started"}.items() <= event["subtype"][1].items()
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
