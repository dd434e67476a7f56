"""The review queue: a break-glass access with its reason and what was read under it, signed off as
reviewed or escalated (audited); other record accesses outside a consultation, signed off once."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from records.audit.log import iter_entries
from server.services import Services
from tests.server.admin.conftest import USER_AGENT, Clinic, problem

REASON = "Unconscious patient in the wing, medication history needed now"


def break_glass(clinic: Clinic, patient_id: str | None = None) -> dict[str, Any]:
    """The host breaks the glass on the laptop and reads patient B's letter under it."""
    ward = clinic.ward
    path = "/api/v1/records/break-glass"
    opened = ward.client.post(
        path,
        json={"patient_id": patient_id or ward.patient_b, "reason": REASON},
        headers={**ward.host, **ward.laptop.posture("POST", path)},
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    read = ward.use("GET", f"/api/v1/records/documents/{ward.doc_b}/content", body["grant"])
    assert read.status_code == 200, read.text
    return body


def test_the_queue_shows_the_reason_who_which_patient_and_what_was_read(clinic: Clinic) -> None:
    opened = break_glass(clinic)
    queue = clinic.console.get("/admin/api/break-glass")
    assert queue.status_code == 200
    [item] = queue.json()
    assert item["id"] == opened["access_id"] and item["status"] == "pending" and item["decision"] is None
    assert item["reason"] == REASON
    assert item["user_name"] == "Dr Host (doctor)" and item["prison_number"] == "B5678DE"
    assert item["device_id"] == "laptop-01"
    [read] = item["reads"]
    assert read["action"] == "document.read" and read["purpose_of_use"] == "ETREAT"
    assert read["document_ids"] == [clinic.ward.doc_b] and read["consultation_id"] is None


def test_sign_off_as_reviewed_then_it_leaves_the_queue_and_is_audited(
    clinic: Clinic, services: Services
) -> None:
    opened = break_glass(clinic)
    done = clinic.console.post(
        f"/admin/api/break-glass/{opened['access_id']}/sign-off", json={"decision": "reviewed", "comment": ""}
    )
    assert done.status_code == 200, done.text
    item = done.json()
    assert item["status"] == "approved" and item["decision"] == "reviewed"
    assert item["reviewed_by"] == "Root (root)" and item["review_note"]
    assert clinic.console.get("/admin/api/break-glass").json() == []
    assert [i["id"] for i in clinic.console.get("/admin/api/break-glass?status=approved").json()] == [
        item["id"]
    ]
    again = clinic.console.post(
        f"/admin/api/break-glass/{opened['access_id']}/sign-off",
        json={"decision": "escalated", "comment": "late"},
    )
    assert again.status_code == 409 and problem(again)["code"] == "review_closed"

    with Session(services.engine) as session:
        entries = list(iter_entries(session=session))
    review = next(e for e in entries if e.action == "breakglass.review" and e.outcome == "success")
    console = next(e for e in entries if e.action == "admin.breakglass.sign_off")
    assert review.request_id == console.request_id  # one action, two entries, one request
    assert console.detail["decision"] == "reviewed" and console.detail["user_agent"] == USER_AGENT
    assert console.authority_jti == opened["jti"] and console.patient_id == clinic.ward.patient_b


def test_escalating_needs_a_comment(clinic: Clinic) -> None:
    opened = break_glass(clinic)
    url = f"/admin/api/break-glass/{opened['access_id']}/sign-off"
    bare = clinic.console.post(url, json={"decision": "escalated", "comment": "  "})
    assert bare.status_code == 422 and problem(bare)["code"] == "validation_error"
    done = clinic.console.post(url, json={"decision": "escalated", "comment": "No emergency on the wing log"})
    assert done.json()["decision"] == "escalated" and done.json()["status"] == "rejected"
    assert done.json()["review_note"] == "No emergency on the wing log"
    unknown = clinic.console.post("/admin/api/break-glass/nope/sign-off", json={"decision": "reviewed"})
    assert unknown.status_code == 404


def test_other_accesses_outside_a_consultation_are_signed_off_once(clinic: Clinic) -> None:
    opened = break_glass(clinic)
    page = clinic.console.get("/admin/api/outside-consultation", params={"limit": 200})
    assert page.status_code == 200
    rows = page.json()["entries"]
    assert all(r["entry"]["consultation_id"] is None for r in rows)
    under_glass = next(r for r in rows if r["entry"]["action"] == "document.read")
    assert under_glass["break_glass_id"] == opened["access_id"]
    imported = next(r for r in rows if r["entry"]["action"] == "document.import")
    assert imported["break_glass_id"] is None and imported["sign_off"] is None

    seq = imported["entry"]["seq"]
    url = f"/admin/api/outside-consultation/{seq}/sign-off"
    done = clinic.console.post(url, json={"decision": "reviewed", "comment": "Routine import"})
    assert done.status_code == 200, done.text
    assert done.json()["reviewer_name"] == "Root (root)" and done.json()["decision"] == "reviewed"
    again = clinic.console.post(url, json={"decision": "escalated", "comment": "twice"})
    assert again.status_code == 409 and problem(again)["code"] == "already_signed_off"
    listed = clinic.console.get("/admin/api/outside-consultation", params={"limit": 200}).json()["entries"]
    assert next(r for r in listed if r["entry"]["seq"] == seq)["sign_off"]["comment"] == "Routine import"

    # A read inside the consultation is not in this queue.
    ward = clinic.ward
    assert (
        ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", ward.grant()["grant"]).status_code == 200
    )
    found = clinic.console.get("/admin/api/audit/entries", params={"consultation": ward.consultation}).json()
    inside = next(r for r in found["entries"] if r["action"].startswith("document."))
    refused = clinic.console.post(
        f"/admin/api/outside-consultation/{inside['seq']}/sign-off", json={"decision": "reviewed"}
    )
    assert refused.status_code == 404
