"""Specialist invites: shown once, stored hashed, single use, expiring — on both databases."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import select

from server.consultations.join_tokens import verify_join_token
from server.consultations.models import Invite
from server.db import session_scope, utcnow
from tests.server.consultations.audit_trail import AuditTrail
from tests.server.consultations.conftest import PATIENT_NAME, PRISON_NUMBER, Clinic

REDEEM = "/api/v1/invites/redeem"


def _invite(clinic: Clinic, cid: str, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    resp = clinic.post(f"{cid}/invites", headers, json=body or None)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def _token(link: str) -> str:
    return link.split("#", 1)[1]


def test_the_link_carries_a_256_bit_token_in_its_fragment_and_only_its_hash_is_stored(clinic: Clinic) -> None:
    cid = clinic.book(specialist={"name": "Dr Remote"})["id"]
    created = _invite(clinic, cid)
    public_url = clinic.services.settings.public_url
    assert created["link"].startswith(f"{public_url}/join#inv_")
    token = _token(created["link"])
    assert len(token) == len("inv_") + 43  # 32 random bytes, base64url
    assert created["name"] == "Dr Remote"
    with session_scope(clinic.services.engine) as session:
        row = session.exec(select(Invite).where(Invite.id == created["invite_id"])).one()
        assert token not in row.model_dump_json() and row.token_hash != token
        assert row.used_at is None
    # Shown once: nothing else ever returns the link again.
    assert token not in clinic.get(f"/{cid}").text and token not in clinic.get("").text


def test_a_redeemed_invite_gives_a_specialist_join_token_and_no_patient_identity(
    clinic: Clinic, audit: AuditTrail
) -> None:
    start = utcnow() + timedelta(minutes=5)  # inside the joining window, so the token verifies now
    booked = clinic.book(
        specialist={"name": "Dr Remote", "email": "remote@example.org"},
        scheduled_start=start.isoformat(),
        scheduled_end=(start + timedelta(hours=1)).isoformat(),
    )
    created = _invite(clinic, booked["id"], name="Dr Actual Remote")
    resp = clinic.client.post(REDEEM, json={"token": _token(created["link"])})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["role"] == "specialist" and body["name"] == "Dr Actual Remote"
    assert body["participant_id"] == f"specialist:{created['invite_id']}"
    assert body["consultation"]["view"] == "public" and body["consultation"]["host_name"] == "Dr Host"
    for secret in (PATIENT_NAME, PRISON_NUMBER, clinic.patient_id, "1980-02-03", "remote@example.org"):
        assert secret not in resp.text
    claims = verify_join_token(jwt=clinic.services.jwt, token=body["token"])
    assert (claims.role, claims.participant_id, claims.name) == (
        "specialist",
        body["participant_id"],
        body["name"],
    )
    assert claims.consultation_id == booked["id"] and claims.device_id is None
    assert audit.actions(consultation_id=booked["id"]) == [
        ("consultation.scheduled", "success"),
        ("consultation.invite_created", "success"),
        ("consultation.invite_redeemed", "success"),
        ("consultation.join_token_issued", "success"),
    ]


def test_an_invite_works_once(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book(specialist={"name": "Dr Remote"})["id"]
    token = _token(_invite(clinic, cid)["link"])
    assert clinic.client.post(REDEEM, json={"token": token}).status_code == 200
    again = clinic.client.post(REDEEM, json={"token": token})
    assert again.status_code == 410 and again.json()["code"] == "invite_used"
    assert token not in again.text
    assert audit.actions(consultation_id=cid)[-1] == ("consultation.invite_redeemed", "denied")


def test_of_concurrent_redemptions_exactly_one_gets_in(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book(specialist={"name": "Dr Remote"})["id"]
    token = _token(_invite(clinic, cid)["link"])
    answers: list[tuple[int, str]] = []
    start = threading.Barrier(6)

    def redeem() -> None:
        start.wait()
        resp = clinic.client.post(REDEEM, json={"token": token})
        answers.append((resp.status_code, resp.json().get("code", "redeemed")))

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [(200, "redeemed")] + [(410, "invite_used")] * 5
    redeemed = [a for a in audit.actions(consultation_id=cid) if a[0] == "consultation.invite_redeemed"]
    assert sorted(redeemed) == [("consultation.invite_redeemed", "denied")] * 5 + [
        ("consultation.invite_redeemed", "success")
    ]


def test_an_expired_invite_is_refused(clinic: Clinic) -> None:
    cid = clinic.book(specialist={"name": "Dr Remote"})["id"]
    created = _invite(clinic, cid, ttl_minutes=5)
    assert datetime.fromisoformat(created["expires_at"]) <= utcnow() + timedelta(minutes=5)
    with session_scope(clinic.services.engine) as session:
        row = session.get(Invite, created["invite_id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)  # as if five minutes had gone by
        session.add(row)
    resp = clinic.client.post(REDEEM, json={"token": _token(created["link"])})
    assert resp.status_code == 410 and resp.json()["code"] == "invite_expired"


def test_unknown_and_malformed_invites_are_refused_alike(clinic: Clinic, audit: AuditTrail) -> None:
    for token in ("inv_" + "A" * 43, "nonsense", "x" * 256):
        resp = clinic.client.post(REDEEM, json={"token": token})
        assert resp.status_code == 403 and resp.json()["code"] == "invite_invalid", token
    assert audit.actions() == [("consultation.invite_redeemed", "denied")] * 3


def test_an_invite_lives_at_most_until_joining_closes(clinic: Clinic) -> None:
    booked = clinic.book(specialist={"name": "Dr Remote"})
    created = _invite(clinic, booked["id"], ttl_minutes=60 * 24 * 7)
    closes = datetime.fromisoformat(booked["scheduled_end"]) + timedelta(minutes=30)
    assert datetime.fromisoformat(created["expires_at"]) == closes
    default = _invite(clinic, booked["id"])
    assert datetime.fromisoformat(default["expires_at"]) == closes


def test_host_or_admin_invite_others_may_not(clinic: Clinic, audit: AuditTrail) -> None:
    cid = clinic.book(specialist={"name": "Dr Remote"})["id"]
    assert _invite(clinic, cid, clinic.admin)["name"] == "Dr Remote"
    refused = clinic.post(f"{cid}/invites", clinic.other, json={"name": "Dr Remote"})
    assert refused.status_code == 403 and "link" not in refused.text
    assert ("consultation.invite_created", "denied") in audit.actions(consultation_id=cid)


def test_an_invite_needs_a_name(clinic: Clinic) -> None:
    cid = clinic.book()["id"]  # room only, no specialist booked
    resp = clinic.post(f"{cid}/invites")
    assert resp.status_code == 422 and "Name the specialist" in resp.json()["detail"]
    assert _invite(clinic, cid, name="Dr Late Addition")["name"] == "Dr Late Addition"


def test_an_invite_to_a_cancelled_consultation_is_not_used_up(clinic: Clinic) -> None:
    cid = clinic.book(specialist={"name": "Dr Remote"})["id"]
    created = _invite(clinic, cid)
    assert clinic.post(f"{cid}/cancel", json={"reason": "ill"}).status_code == 200
    resp = clinic.client.post(REDEEM, json={"token": _token(created["link"])})
    assert resp.status_code == 409 and resp.json()["detail"] == 'Cannot join in state "cancelled"'
    with session_scope(clinic.services.engine) as session:
        row = session.get(Invite, created["invite_id"])
        assert row is not None and row.used_at is None
