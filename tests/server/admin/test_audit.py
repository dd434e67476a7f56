"""Audit search in the console: by patient, user, device, action, outcome and dates; paging; one
entry in full; who accessed a patient's record; CSV and FHIR exports; the integrity check, which
fails in plain words once a row is changed in the database behind the trigger's back."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from fhirclient.models.bundle import Bundle
from sqlalchemy import text
from sqlmodel import Session

from records.audit.log import iter_entries
from server.audit import record_event
from server.services import Services
from tests.server.admin.conftest import USER_AGENT, Clinic, problem


def read_document(clinic: Clinic) -> None:
    """The host reads patient A's letter under a grant in the live consultation."""
    ward = clinic.ward
    grant = ward.grant()["grant"]
    read = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}/content", grant)
    assert read.status_code == 200, read.text


def search(clinic: Clinic, **params: Any) -> dict[str, Any]:
    answer = clinic.console.get("/admin/api/audit/entries", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_document_read_is_found_by_patient_with_consultation_purpose_and_device(clinic: Clinic) -> None:
    read_document(clinic)
    found = search(clinic, patient="a1234bc", action="document.read")
    assert found["patient_id"] == clinic.ward.patient_a
    [row] = found["entries"]
    assert row["outcome"] == "allowed"
    assert row["consultation_id"] == clinic.ward.consultation
    assert row["purpose_of_use"] == "TREAT"
    assert row["device_id"] == "laptop-01"
    assert row["actor_name"] == "Dr Host (doctor)" and row["actor_role"] == "clinician"
    assert row["prison_number"] == "A1234BC"
    assert row["document_ids"] == [clinic.ward.doc_a]
    assert row["intact"] is True


def test_each_filter_narrows_the_search(clinic: Clinic) -> None:
    read_document(clinic)
    by_user = search(clinic, user="doctor", limit=200)["entries"]
    assert by_user and all(r["actor_id"] == clinic.ward.host_id for r in by_user)
    by_device = search(clinic, device="laptop-02", limit=200)["entries"]
    assert by_device and all(r["device_id"] == "laptop-02" for r in by_device)
    denied = search(clinic, outcome="denied", limit=200)["entries"]
    assert all(r["outcome"] == "denied" for r in denied)
    today = datetime.now(UTC).date()
    assert search(clinic, action="document.read", **{"from": today.isoformat(), "to": today.isoformat()})[
        "entries"
    ]
    yesterday = (today - timedelta(days=1)).isoformat()
    assert search(clinic, action="document.read", to=yesterday)["entries"] == []
    backwards = clinic.console.get(
        "/admin/api/audit/entries", params={"from": today.isoformat(), "to": yesterday}
    )
    assert backwards.status_code == 422 and problem(backwards)["code"] == "validation_error"
    unknown = clinic.console.get("/admin/api/audit/entries", params={"patient": "Z9999ZZ"})
    assert unknown.status_code == 422 and problem(unknown)["code"] == "unknown_patient"
    assert "Z9999ZZ" not in unknown.text  # patient data stays out of error messages


def test_pages_never_repeat_or_skip(clinic: Clinic) -> None:
    everything = search(clinic, user="root", limit=200)["entries"]
    seqs: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"user": "root", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = search(clinic, **params)
        seqs += [r["seq"] for r in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The searches themselves are audited as they go, so the walk sees at least what was there.
    assert len(seqs) == len(set(seqs))
    assert [s for s in seqs if s <= everything[0]["seq"]] == [r["seq"] for r in everything]
    bad = clinic.console.get("/admin/api/audit/entries", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and problem(bad)["code"] == "invalid_cursor"


def test_one_entry_in_full(clinic: Clinic) -> None:
    read_document(clinic)
    row = search(clinic, action="document.read")["entries"][0]
    whole = clinic.console.get(f"/admin/api/audit/entries/{row['seq']}")
    assert whole.status_code == 200
    body = whole.json()
    entry = body["entry"]
    assert entry["seq"] == row["seq"] and entry["action"] == "document.read"
    assert len(entry["entry_hash"]) == 64 and len(entry["prev_hash"]) == 64
    assert (
        entry["authority_jti"]
        and entry["request_id"]
        and entry["consultation_id"] == clinic.ward.consultation
    )
    assert body["actor_name"] == "Dr Host (doctor)" and body["prison_number"] == "A1234BC" and body["intact"]
    missing = clinic.console.get("/admin/api/audit/entries/999999")
    assert missing.status_code == 404 and problem(missing)["code"] == "not_found"


def test_who_accessed_this_patient(clinic: Clinic) -> None:
    read_document(clinic)
    answer = clinic.console.get(
        f"/admin/api/audit/patients/{clinic.ward.patient_a}/accesses", params={"limit": 200}
    )
    assert answer.status_code == 200
    rows = answer.json()["entries"]
    actions = {r["action"] for r in rows}
    assert {"grant.issue", "document.read"} <= actions
    assert all(r["patient_id"] == clinic.ward.patient_a for r in rows)
    assert all(
        r["action"].split(".")[0] in {"document", "note", "patient", "grant", "breakglass", "share"}
        for r in rows
    )
    by_number = clinic.console.get("/admin/api/audit/patients/A1234BC/accesses", params={"limit": 200}).json()
    assert [r["seq"] for r in by_number["entries"]][-len(rows) :] == [r["seq"] for r in rows][-len(rows) :]


def test_searches_are_themselves_audited(clinic: Clinic, services: Services) -> None:
    search(clinic, patient="A1234BC", action="document.read")
    with Session(services.engine) as session:
        last = [e for e in iter_entries(session=session) if e.action == "audit.query"][-1]
    assert last.actor_role == "admin" and last.patient_id == clinic.ward.patient_a
    assert last.detail["via"] == "admin_console" and last.detail["user_agent"] == USER_AGENT
    assert last.detail["filters"] == {"patient": "A1234BC", "action": "document.read"}
    assert last.purpose_of_use == "HSYSADMIN" and last.ip == "testclient"


def test_csv_export_of_the_current_search(clinic: Clinic, services: Services) -> None:
    read_document(clinic)
    with Session(services.engine) as session:
        # A value a spreadsheet would run as a formula comes out as text.
        record_event(
            session=session,
            action="document.read",
            outcome="denied",
            actor_id="doctor-x",
            actor_role="clinician",
            patient_id=clinic.ward.patient_a,
            data="=HYPERLINK(1)",
        )
        session.commit()
    answer = clinic.console.get(
        "/admin/api/audit/export", params={"patient": "A1234BC", "action": "document.read"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="audit-entries.csv"'
    assert answer.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 2
    allowed = next(r for r in rows if r["outcome"] == "allowed")
    assert allowed["consultation_id"] == clinic.ward.consultation and allowed["device_id"] == "laptop-01"
    assert allowed["purpose_of_use"] == "TREAT" and allowed["prison_number"] == "A1234BC"
    assert next(r for r in rows if r["outcome"] == "denied")["description"] == "'=HYPERLINK(1)"


def test_fhir_export_is_a_valid_bundle_of_audit_events(clinic: Clinic) -> None:
    read_document(clinic)
    answer = clinic.console.get(
        "/admin/api/audit/export", params={"format": "fhir", "patient": "A1234BC", "action": "document.read"}
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/fhir+json"
    body = answer.json()
    bundle = Bundle(body, strict=True)
    assert bundle.type == "collection" and len(bundle.entry) == 1
    event = body["entry"][0]["resource"]
    assert (
        event["resourceType"] == "AuditEvent" and event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    )


def test_export_refuses_too_much(clinic: Clinic, monkeypatch: Any) -> None:
    from server.admin import audit_search

    monkeypatch.setattr(audit_search, "EXPORT_LIMIT", 3)
    monkeypatch.setattr(audit_search, "PAGE_LIMIT", 2)
    answer = clinic.console.get("/admin/api/audit/export")
    assert answer.status_code == 422 and problem(answer)["code"] == "export_too_large"


def tamper(services: Services, seq: int) -> None:
    """Change one stored entry the way an insider with database rights would: trigger off, UPDATE."""
    engine = services.engine
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only"))
            conn.execute(
                text("UPDATE audit_entries SET actor_id = 'someone-else' WHERE seq = :seq"), {"seq": seq}
            )
            # Back on at once: the PostgreSQL database is shared by the session's tests.
            conn.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_entries_no_update"))
            conn.execute(
                text("UPDATE audit_entries SET actor_id = 'someone-else' WHERE seq = :seq"), {"seq": seq}
            )


def test_integrity_verifies_then_fails_in_plain_words_after_tampering(
    clinic: Clinic, services: Services
) -> None:
    read_document(clinic)
    assert services.records is not None
    services.records.checkpoint()
    before = clinic.console.get("/admin/api/integrity").json()
    assert before["status"] == "unknown" and before["checkpoint"]["tree_size"] >= 1
    ok = clinic.console.post("/admin/api/integrity/verify")
    assert ok.status_code == 200, ok.text
    result = ok.json()
    assert result["ok"] is True and result["status"] == "ok" and result["problem"] is None
    assert result["summary"].startswith(
        f"The audit log verifies: all {result['entries_checked']} entries are intact."
    )
    ts = result["checkpoint"]["ts"]
    assert f"signed at {ts[:10]} {ts[11:19]} UTC." in result["summary"]
    assert clinic.console.get("/admin/api/integrity").json()["status"] == "ok"

    target = search(clinic, action="document.read")["entries"][0]["seq"]
    tamper(services, target)
    failed = clinic.console.post("/admin/api/integrity/verify").json()
    assert failed["ok"] is False and failed["status"] == "failed"
    assert failed["problem"] == "edited" and failed["first_bad_seq"] == target
    assert failed["summary"].startswith(
        f"The audit log has been tampered with. Entry {target} has been changed"
    )
    assert f"Entries 1 to {target - 1} verify." in failed["summary"]
    status = clinic.console.get("/admin/api/integrity").json()
    assert status["status"] == "failed" and status["last_verification"]["first_bad_seq"] == target
    row = search(clinic, action="document.read")["entries"][0]
    assert row["seq"] == target and row["intact"] is False and row["actor_id"] == "someone-else"
