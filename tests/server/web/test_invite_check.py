"""``POST /api/v1/invites/check``: the specialist's page checks a link without spending it.

On both databases. The check says when joining opens (so the page can offer a set-up check
the day before) and who sent the invite (so a link that does not work says whom to ask); it
never uses the invite up, and the invite stays single use for the redeem that follows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from server.consultations.models import Invite
from server.db import session_scope, utcnow
from server.identity.models import User
from tests.server.consultations.audit_trail import AuditTrail
from tests.server.consultations.conftest import (
    PATIENT_DOB,
    PATIENT_NAME,
    PRISON_NUMBER,
    Clinic,
    audit,
    clinic,
    set_times,
)

__all__ = ["audit", "clinic"]  # the fixtures, for the tests here

CHECK = "/api/v1/invites/check"
REDEEM = "/api/v1/invites/redeem"
HOST_ESTABLISHMENT = "HMP Example"


def _invite(clinic: Clinic, cid: str, **body: Any) -> tuple[str, str]:
    """Invite the specialist as the host: (invite id, raw token from the link's fragment)."""
    resp = clinic.post(f"{cid}/invites", json=body or None)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    return created["invite_id"], created["link"].split("#", 1)[1]


def _book(clinic: Clinic, *, starts_in: timedelta) -> str:
    start = utcnow() + starts_in
    booked = clinic.book(
        specialist={"name": "Dr Remote", "email": "remote@example.org"},
        scheduled_start=start.isoformat(),
        scheduled_end=(start + timedelta(hours=1)).isoformat(),
    )
    cid: str = booked["id"]
    return cid


def _host_works_at(clinic: Clinic, establishment: str) -> None:
    with session_scope(clinic.services.engine) as session:
        host = session.exec(select(User).where(User.id == clinic.host_id)).one()
        host.establishment = establishment
        session.add(host)


def _used_at(clinic: Clinic, invite_id: str) -> datetime | None:
    with session_scope(clinic.services.engine) as session:
        row = session.get(Invite, invite_id)
        assert row is not None
        return row.used_at


def _no_patient_in(clinic: Clinic, text: str) -> None:
    secrets = (PATIENT_NAME, PRISON_NUMBER, clinic.patient_id, PATIENT_DOB.isoformat(), "remote@example.org")
    for secret in secrets:
        assert secret not in text, secret


def test_the_day_before_the_check_says_when_and_who_and_spends_nothing(
    clinic: Clinic, audit: AuditTrail
) -> None:
    _host_works_at(clinic, HOST_ESTABLISHMENT)
    cid = _book(clinic, starts_in=timedelta(days=1))
    invite_id, token = _invite(clinic, cid, name="Dr Actual Remote")

    before = utcnow()
    first = clinic.client.post(CHECK, json={"token": token})
    again = clinic.client.post(CHECK, json={"token": token})  # a reload, or the link opened again

    assert first.status_code == again.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "early"
    assert body["name"] == "Dr Actual Remote"
    start = datetime.fromisoformat(body["consultation"]["scheduled_start"])
    assert datetime.fromisoformat(body["opens_at"]) == start - timedelta(minutes=15)
    # By the server's clock: the page counts down from this, whatever the computer's clock says.
    expected = (start - timedelta(minutes=15) - before).total_seconds()
    assert expected - 5 <= body["opens_in_s"] <= expected
    assert datetime.fromisoformat(body["expires_at"]) == start + timedelta(hours=1, minutes=30)
    assert body["invited_by"] == {"name": "Dr Host", "establishment": HOST_ESTABLISHMENT}
    assert body["consultation"]["view"] == "public" and body["consultation"]["host_name"] == "Dr Host"
    assert "token" not in body
    _no_patient_in(clinic, first.text)

    # Not spent: the invite is unused, and it still redeems — once.
    assert _used_at(clinic, invite_id) is None
    redeemed = clinic.client.post(REDEEM, json={"token": token})
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["participant_id"] == f"specialist:{invite_id}"
    assert _used_at(clinic, invite_id) is not None
    twice = clinic.client.post(REDEEM, json={"token": token})
    assert twice.status_code == 410 and twice.json()["code"] == "invite_used"

    assert audit.actions(consultation_id=cid) == [
        ("consultation.scheduled", "success"),
        ("consultation.invite_created", "success"),
        ("consultation.invite_checked", "success"),
        ("consultation.invite_checked", "success"),
        ("consultation.invite_redeemed", "success"),
        ("consultation.join_token_issued", "success"),
        ("consultation.invite_redeemed", "denied"),
    ]
    checked = [e for e in audit.events(consultation_id=cid) if e.action == "consultation.invite_checked"]
    assert {e.actor_id for e in checked} == {f"specialist:{invite_id}"}
    # The audit trail names the patient (it is the clinic's record); the answer never does.
    assert {e.patient_id for e in checked} == {clinic.patient_id}


def test_within_the_window_the_check_says_open(clinic: Clinic) -> None:
    cid = _book(clinic, starts_in=timedelta(minutes=5))
    invite_id, token = _invite(clinic, cid)
    resp = clinic.client.post(CHECK, json={"token": token})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "open"
    assert resp.json()["opens_in_s"] == 0
    assert resp.json()["invited_by"] == {"name": "Dr Host", "establishment": None}
    assert _used_at(clinic, invite_id) is None


def test_a_used_link_says_who_sent_it(clinic: Clinic, audit: AuditTrail) -> None:
    _host_works_at(clinic, HOST_ESTABLISHMENT)
    cid = _book(clinic, starts_in=timedelta(minutes=5))
    _, token = _invite(clinic, cid)
    assert clinic.client.post(REDEEM, json={"token": token}).status_code == 200

    resp = clinic.client.post(CHECK, json={"token": token})
    assert resp.status_code == 410, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["code"] == "invite_used"
    assert problem["invited_by"] == {"name": "Dr Host", "establishment": HOST_ESTABLISHMENT}
    assert token not in resp.text
    _no_patient_in(clinic, resp.text)
    assert audit.actions(consultation_id=cid)[-1] == ("consultation.invite_checked", "denied")
    # The redeem refusal names the inviter in the same way.
    used = clinic.client.post(REDEEM, json={"token": token})
    assert used.json()["invited_by"] == problem["invited_by"]


def test_an_expired_link_says_so_and_who_sent_it(clinic: Clinic) -> None:
    cid = _book(clinic, starts_in=timedelta(days=1))
    invite_id, token = _invite(clinic, cid)
    with session_scope(clinic.services.engine) as session:
        row = session.get(Invite, invite_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    resp = clinic.client.post(CHECK, json={"token": token})
    assert resp.status_code == 410 and resp.json()["code"] == "invite_expired"
    assert resp.json()["invited_by"]["name"] == "Dr Host"


def test_a_cancelled_consultation_is_not_taking_place_and_the_link_stays_unused(clinic: Clinic) -> None:
    cid = _book(clinic, starts_in=timedelta(days=1))
    invite_id, token = _invite(clinic, cid)
    assert clinic.post(f"{cid}/cancel", json={"reason": "Patient transferred"}).status_code == 200
    resp = clinic.client.post(CHECK, json={"token": token})
    assert resp.status_code == 409
    problem = resp.json()
    assert (problem["code"], problem["state"]) == ("invalid_state", "cancelled")
    assert problem["invited_by"]["name"] == "Dr Host"
    assert "transferred" not in resp.text  # the reason is the clinic's business
    assert _used_at(clinic, invite_id) is None


def test_after_the_window_the_check_says_it_closed(clinic: Clinic) -> None:
    cid = _book(clinic, starts_in=timedelta(minutes=5))
    _, token = _invite(clinic, cid)
    now = utcnow()
    set_times(clinic.services, cid, start=now - timedelta(hours=3), end=now - timedelta(hours=2))
    resp = clinic.client.post(CHECK, json={"token": token})
    assert resp.status_code == 409 and resp.json()["code"] == "join_window_closed"


@pytest.mark.parametrize("token", ["inv_" + "A" * 43, "nonsense", "x" * 256])
def test_unknown_links_are_refused_and_name_nobody(clinic: Clinic, audit: AuditTrail, token: str) -> None:
    resp = clinic.client.post(CHECK, json={"token": token})
    assert resp.status_code == 403
    assert resp.json()["code"] == "invite_invalid"
    assert "invited_by" not in resp.json()
    assert audit.actions() == [("consultation.invite_checked", "denied")]


def test_a_check_needs_a_token(clinic: Clinic) -> None:
    for body in ({}, {"token": ""}, {"token": "x" * 257}):
        resp = clinic.client.post(CHECK, json=body)
        assert resp.status_code == 422 and resp.json()["code"] == "validation_error", body
