"""From scheduled to ended (or cancelled, or no-show): transitions, host-only actions, identity, consent."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest

from server.consultations import service
from server.consultations.errors import ConsentNotRecorded, IdentityNotConfirmed
from server.consultations.models import Consultation
from server.db import session_scope, utcnow
from server.errors import AccessDenied, InvalidState
from tests.server.consultations.audit_trail import AuditTrail
from tests.server.consultations.conftest import (
    PATIENT_DOB,
    PATIENT_NAME,
    PRISON_NUMBER,
    Clinic,
    hub_scope,
    set_times,
)


def _open(clinic: Clinic, cid: str) -> Consultation:
    """What the signalling hub does when the host's socket is authenticated."""
    with hub_scope(clinic.services) as session:
        return service.mark_host_present(
            session=session, consultation=service.get_consultation(session=session, consultation_id=cid)
        )


def _start(clinic: Clinic, cid: str, by: str | None = None) -> Consultation:
    """What the signalling hub does when the host presses start."""
    with hub_scope(clinic.services) as session:
        return service.start_consultation(
            session=session,
            consultation=service.get_consultation(session=session, consultation_id=cid),
            by_user_id=by or clinic.host_id,
        )


def _ready(clinic: Clinic, cid: str) -> None:
    assert clinic.post(f"{cid}/identity-check").status_code == 200
    assert clinic.post(f"{cid}/consent", json={"consent": "verbal"}).status_code == 200


def test_the_whole_life_of_a_consultation_is_audited(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book()["id"]
    _ready(clinic, cid)
    assert _open(clinic, cid).state == "open"
    live = _start(clinic, cid)
    assert live.state == "live" and live.live_at is not None
    ended = clinic.post(f"{cid}/end", json={"reason": "done"})
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"] == "ended" and ended.json()["end_reason"] == "done"
    assert audit.actions(consultation_id=cid) == [
        ("consultation.scheduled", "success"),
        ("consultation.identity_confirmed", "success"),
        ("consultation.consent_recorded", "success"),
        ("consultation.opened", "success"),
        ("consultation.started", "success"),
        ("consultation.ended", "success"),
    ]
    assert {e.actor_id for e in audit.events(consultation_id=cid)} == {clinic.host_id}
    assert {e.patient_id for e in audit.events(consultation_id=cid)} == {clinic.patient_id}


def test_identity_check_shows_the_host_who_the_patient_is(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    resp = clinic.post(f"{cid}/identity-check")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["name"] == PATIENT_NAME and body["prison_number"] == PRISON_NUMBER
    assert body["date_of_birth"] == PATIENT_DOB.isoformat() and body["identity_confirmed_at"]
    assert clinic.get(f"/{cid}").json()["identity_confirmed_at"] == body["identity_confirmed_at"]


@pytest.mark.parametrize("who", ["other", "admin"])
def test_only_the_host_checks_identity_records_consent_or_gets_a_join_token(
    clinic: Clinic, audit: AuditTrail, who: str
) -> None:
    cid = clinic.book()["id"]
    headers = getattr(clinic, who)
    for path, kw in (
        ("identity-check", {}),
        ("consent", {"json": {"consent": "verbal"}}),
        ("join-token", {}),
    ):
        resp = clinic.post(f"{cid}/{path}", headers, **kw)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["code"] == "access_denied"
        assert PATIENT_NAME not in resp.text and PRISON_NUMBER not in resp.text
    stranger = getattr(clinic, f"{who}_id")
    denied = [e for e in audit.events(consultation_id=cid) if e.outcome == "denied"]
    assert [(e.action, e.actor_id, e.patient_id, e.reason) for e in denied] == [
        ("consultation.identity_confirmed", stranger, clinic.patient_id, "access_denied"),
        ("consultation.consent_recorded", stranger, clinic.patient_id, "access_denied"),
        ("consultation.join_token_issued", stranger, clinic.patient_id, "access_denied"),
    ]
    host_view = clinic.get(f"/{cid}").json()
    assert host_view["identity_confirmed_at"] is None and host_view["consent_recorded_at"] is None


def test_only_the_host_ends_and_only_host_or_admin_cancel(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book()["id"]
    assert clinic.post(f"{cid}/cancel", clinic.other, json={"reason": "x"}).status_code == 403
    _open(clinic, cid)
    assert clinic.post(f"{cid}/end", clinic.other).status_code == 403
    assert clinic.post(f"{cid}/end", clinic.admin).status_code == 403
    cancelled = clinic.post(f"{cid}/cancel", clinic.admin, json={"reason": "patient transferred"})
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["state"] == "cancelled" and body["cancel_reason"] == "patient transferred"
    assert ("consultation.cancelled", "success") in audit.actions(consultation_id=cid)
    assert audit.actions(consultation_id=cid).count(("consultation.ended", "denied")) == 2


def test_going_live_needs_identity_and_consent(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book()["id"]
    _open(clinic, cid)
    with pytest.raises(IdentityNotConfirmed) as no_identity:
        _start(clinic, cid)
    assert no_identity.value.code == "identity_not_confirmed" and no_identity.value.state == "open"
    assert clinic.post(f"{cid}/identity-check").status_code == 200
    with pytest.raises(ConsentNotRecorded) as no_consent:
        _start(clinic, cid)
    assert no_consent.value.code == "consent_not_recorded"
    consent = clinic.post(f"{cid}/consent", json={"consent": "verbal", "note": "agreed on camera"})
    assert consent.status_code == 200 and consent.json()["consent_recorded_at"]
    assert _start(clinic, cid).state == "live"
    refusals = [e.reason for e in audit.events(consultation_id=cid) if e.outcome == "denied"]
    assert refusals == ["identity_not_confirmed", "consent_not_recorded"]


def test_only_the_host_goes_live(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    _ready(clinic, cid)
    _open(clinic, cid)
    for stranger in (clinic.other_id, clinic.admin_id, "nobody"):
        with pytest.raises(AccessDenied):
            _start(clinic, cid, by=stranger)
    assert clinic.get(f"/{cid}").json()["state"] == "open"


def test_consent_must_be_verbal(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    resp = clinic.post(f"{cid}/consent", json={"consent": "written"})
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    ("path", "body", "verb"),
    [
        ("cancel", {"reason": "x"}, "cancel"),
        ("no-show", None, "mark no-show"),
        ("identity-check", None, "confirm identity"),
        ("consent", {"consent": "verbal"}, "record consent"),
    ],
)
def test_a_live_consultation_refuses_what_only_comes_before(
    clinic: Clinic, path: str, body: dict[str, str] | None, verb: str
) -> None:
    start = utcnow() - timedelta(minutes=5)
    cid = clinic.book()["id"]
    _ready(clinic, cid)
    set_times(clinic.services, cid, start=start, end=start + timedelta(hours=1))
    _open(clinic, cid)
    _start(clinic, cid)
    resp = clinic.post(f"{cid}/{path}", json=body)
    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert problem["code"] == "invalid_state" and problem["state"] == "live"
    assert problem["detail"] == f'Cannot {verb} in state "live"'


def test_an_ended_consultation_refuses_everything(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    _ready(clinic, cid)
    _open(clinic, cid)
    _start(clinic, cid)
    assert clinic.post(f"{cid}/end").status_code == 200
    for path, body, verb in (
        ("end", None, "end"),
        ("cancel", {"reason": "x"}, "cancel"),
        ("identity-check", None, "confirm identity"),
        ("invites", {"name": "Dr Remote"}, "invite"),
        ("join-token", None, "join"),
    ):
        resp = clinic.post(f"{cid}/{path}", json=body)
        assert resp.status_code == 409, (path, resp.text)
        assert resp.json()["detail"] == f'Cannot {verb} in state "ended"'
    with pytest.raises(InvalidState, match='Cannot open in state "ended"'):
        _open(clinic, cid)
    with pytest.raises(InvalidState, match='Cannot start in state "ended"'):
        _start(clinic, cid)


def test_ending_before_the_host_arrived_is_refused(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    resp = clinic.post(f"{cid}/end")
    assert resp.status_code == 409 and resp.json()["detail"] == 'Cannot end in state "scheduled"'


def test_the_host_can_end_an_open_call_that_never_went_live(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    _open(clinic, cid)
    resp = clinic.post(f"{cid}/end")
    assert resp.status_code == 200 and resp.json()["state"] == "ended"
    assert resp.json()["live_at"] is None


def test_host_presence_opens_once_and_is_idempotent(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book()["id"]
    first = _open(clinic, cid)
    again = _open(clinic, cid)
    assert first.state == again.state == "open" and first.opened_at == again.opened_at
    _ready(clinic, cid)
    _start(clinic, cid)
    assert _open(clinic, cid).state == "live"
    assert audit.actions(consultation_id=cid).count(("consultation.opened", "success")) == 1


def test_no_show_only_once_the_start_has_passed(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book()["id"]
    early = clinic.post(f"{cid}/no-show")
    assert early.status_code == 409
    assert early.json()["code"] == "not_yet_due" and early.json()["state"] == "scheduled"
    assert early.json()["detail"] == 'Cannot mark no-show in state "scheduled" before the scheduled start'
    start = utcnow() - timedelta(minutes=10)
    set_times(clinic.services, cid, start=start, end=start + timedelta(hours=1))
    assert clinic.post(f"{cid}/no-show", clinic.other).status_code == 403
    resp = clinic.post(f"{cid}/no-show", clinic.admin)
    assert resp.status_code == 200 and resp.json()["state"] == "no_show"
    again = clinic.post(f"{cid}/cancel", json={"reason": "x"})
    assert again.status_code == 409 and again.json()["detail"] == 'Cannot cancel in state "no_show"'
    assert audit.actions(consultation_id=cid) == [
        ("consultation.scheduled", "success"),
        ("consultation.no_show", "denied"),
        ("consultation.no_show", "denied"),
        ("consultation.no_show", "success"),
        ("consultation.cancelled", "denied"),
    ]


def test_cancelled_consultations_cannot_be_opened(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    assert clinic.post(f"{cid}/cancel", json={"reason": "ill"}).status_code == 200
    with pytest.raises(InvalidState) as refused:
        _open(clinic, cid)
    assert refused.value.state == "cancelled"


def test_the_system_may_end_a_call_without_a_user(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book()["id"]
    _open(clinic, cid)
    with session_scope(clinic.services.engine) as session:
        ended = service.end_consultation(
            session=session,
            consultation=service.get_consultation(session=session, consultation_id=cid),
            by_user_id=None,
            reason="host did not come back",
        )
    assert ended.state == "ended" and ended.ended_by is None
    last = audit.events(consultation_id=cid)[-1]
    assert (last.action, last.outcome, last.actor_id) == ("consultation.ended", "success", None)


def _end_and_cancel_at_once(clinic: Clinic, cid: str) -> dict[str, httpx.Response]:
    start = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}

    def send(path: str, headers: dict[str, str], body: dict[str, str]) -> None:
        start.wait()
        answers[path] = clinic.post(f"{cid}/{path}", headers, json=body)

    threads = [
        threading.Thread(target=send, args=("end", clinic.host, {"reason": "done"})),
        threading.Thread(target=send, args=("cancel", clinic.admin, {"reason": "transferred"})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_of_two_transitions_racing_from_one_state_exactly_one_happens(
    clinic: Clinic, audit: AuditTrail
) -> None:
    """The host ends the call while an admin cancels it: one wins, the other is told the state."""
    for _ in range(5):
        cid = clinic.book()["id"]
        _open(clinic, cid)
        answers = _end_and_cancel_at_once(clinic, cid)
        assert sorted(r.status_code for r in answers.values()) == [200, 409]
        winner = next(path for path, r in answers.items() if r.status_code == 200)
        final = {"end": "ended", "cancel": "cancelled"}[winner]
        loser = next(r.json() for r in answers.values() if r.status_code == 409)
        assert (loser["code"], loser["state"]) == ("invalid_state", final)
        assert clinic.get(f"/{cid}").json()["state"] == final
        outcomes = {
            action: outcome
            for action, outcome in audit.actions(consultation_id=cid)
            if action in ("consultation.ended", "consultation.cancelled")
        }
        assert outcomes == {
            "consultation.ended": "success" if winner == "end" else "denied",
            "consultation.cancelled": "success" if winner == "cancel" else "denied",
        }
