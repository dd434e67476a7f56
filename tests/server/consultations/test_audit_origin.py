"""Every consultation event made over the API says which request made it and from where."""

from __future__ import annotations

from tests.server.consultations.audit_trail import AuditTrail
from tests.server.consultations.conftest import Clinic


def test_consultation_events_carry_the_request_id_and_client_address(
    clinic: Clinic, audit: AuditTrail
) -> None:
    booked = clinic.schedule(headers={**clinic.host, "X-Request-ID": "req-book-1"})
    assert booked.status_code == 201, booked.text
    cid = booked.json()["id"]
    checked = clinic.post(f"{cid}/identity-check", {**clinic.host, "X-Request-ID": "req-identity-1"})
    assert checked.status_code == 200, checked.text
    refused = clinic.post(
        f"{cid}/consent", {**clinic.other, "X-Request-ID": "req-refused-1"}, json={"consent": "verbal"}
    )
    assert refused.status_code == 403 and refused.headers["X-Request-ID"] == "req-refused-1"

    events = audit.events(consultation_id=cid)
    assert [(e.action, e.outcome, e.request_id) for e in events] == [
        ("consultation.scheduled", "success", "req-book-1"),
        ("consultation.identity_confirmed", "success", "req-identity-1"),
        ("consultation.consent_recorded", "denied", "req-refused-1"),
    ]
    # Starlette's test client connects from the address "testclient".
    assert {e.ip for e in events} == {"testclient"}


def test_a_request_without_an_id_still_gets_one_in_its_audit_event(clinic: Clinic, audit: AuditTrail) -> None:
    booked = clinic.schedule()
    assert booked.status_code == 201, booked.text
    [event] = audit.events(consultation_id=booked.json()["id"])
    assert event.request_id == booked.headers["X-Request-ID"] and event.ip == "testclient"
