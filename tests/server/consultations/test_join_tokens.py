"""Join tokens: claims and window, and who gets one (host, room endpoint with posture) — on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from server.consultations import joining
from server.consultations.join_tokens import (
    ParticipantRole,
    issue_join_token,
    verify_join_token,
)
from server.consultations.models import Consultation
from server.db import session_scope, utcnow
from server.errors import AccessDenied, InvalidToken, NotFound
from server.identity.service import ACCESS_AUDIENCE
from server.security.jwt import TokenExpired, WrongAudience
from server.services import Services
from tests.server.consultations.audit_trail import AuditTrail
from tests.server.consultations.conftest import PATIENT_NAME, PRISON_NUMBER, Clinic, set_times
from tests.server.devices.helpers import attest, enrol, proof_headers

JOIN_URL = "http://testserver/api/v1/devices/me/join-token"


def _soon(clinic: Clinic, minutes: int = 5, **over: Any) -> dict[str, Any]:
    """Book a consultation starting in a few minutes: inside its joining window now."""
    start = utcnow() + timedelta(minutes=minutes)
    return clinic.book(
        scheduled_start=start.isoformat(), scheduled_end=(start + timedelta(hours=1)).isoformat(), **over
    )


def _consultation(start: datetime, end: datetime) -> Consultation:
    return Consultation(
        id="c" * 32,
        patient_id="p",
        host_user_id="h",
        scheduled_start=start,
        scheduled_end=end,
        created_by="h",
    )


def test_the_host_gets_a_token_for_the_window_around_the_booking(clinic: Clinic, audit: AuditTrail) -> None:
    booked = _soon(clinic)
    resp = clinic.post(f"{booked['id']}/join-token")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["role"] == "host" and body["participant_id"] == f"host:{clinic.host_id}"
    assert body["consultation"]["view"] == "public" and PRISON_NUMBER not in resp.text
    start, end = (datetime.fromisoformat(booked[k]) for k in ("scheduled_start", "scheduled_end"))
    claims = verify_join_token(jwt=clinic.services.jwt, token=body["token"])
    assert claims.participant_id == f"host:{clinic.host_id}" and claims.role is ParticipantRole.HOST
    assert claims.consultation_id == booked["id"] and claims.name == "Dr Host" and claims.device_id is None
    # JWT times are whole seconds.
    assert claims.not_before == (start - timedelta(minutes=15)).replace(microsecond=0)
    assert claims.expires_at == (end + timedelta(minutes=30)).replace(microsecond=0)
    issued = [
        e for e in audit.events(consultation_id=booked["id"]) if e.action == "consultation.join_token_issued"
    ]
    assert [(e.outcome, e.actor_id) for e in issued] == [("success", clinic.host_id)]


def test_a_token_is_refused_before_its_window_opens(clinic: Clinic) -> None:
    booked = _soon(clinic, minutes=90)  # not_before is 75 minutes from now
    token = clinic.post(f"{booked['id']}/join-token").json()["token"]
    with pytest.raises(InvalidToken) as refused:
        verify_join_token(jwt=clinic.services.jwt, token=token)
    assert refused.value.code == "invalid_token"


def test_a_token_is_refused_after_its_window_closes(client: TestClient, services: Services) -> None:
    start = utcnow() - timedelta(hours=3)
    over = _consultation(start, start + timedelta(hours=2))  # closed 30 minutes ago
    token = issue_join_token(
        jwt=services.jwt,
        consultation=over,
        participant_id="host:h",
        role=ParticipantRole.HOST,
        name="Dr Host",
    )
    with pytest.raises(TokenExpired) as refused:
        verify_join_token(jwt=services.jwt, token=token)
    assert refused.value.code == "token_expired"


def test_other_tokens_are_not_join_tokens(client: TestClient, services: Services) -> None:
    access = services.jwt.issue(subject="u", audience=ACCESS_AUDIENCE, ttl=timedelta(minutes=5))
    with pytest.raises(WrongAudience):
        verify_join_token(jwt=services.jwt, token=access)
    now = utcnow()
    with pytest.raises(ValueError, match="does not match role"):
        issue_join_token(
            jwt=services.jwt,
            consultation=_consultation(now, now + timedelta(hours=1)),
            participant_id="host:h",
            role=ParticipantRole.SPECIALIST,
            name="x",
        )


def test_a_token_whose_subject_contradicts_its_role_is_refused(
    client: TestClient, services: Services
) -> None:
    forged = services.jwt.issue(
        subject="host:someone",
        audience="telemed-signalling",
        ttl=timedelta(minutes=5),
        claims={"cid": "c", "role": "specialist", "name": "x"},
    )
    with pytest.raises(InvalidToken, match="claims are not valid"):
        verify_join_token(jwt=services.jwt, token=forged)


def test_no_host_token_once_joining_has_closed(clinic: Clinic) -> None:
    cid = clinic.book()["id"]
    start = utcnow() - timedelta(hours=3)
    set_times(clinic.services, cid, start=start, end=start + timedelta(hours=2))
    resp = clinic.post(f"{cid}/join-token")
    assert resp.status_code == 409 and resp.json()["code"] == "join_window_closed"
    assert resp.json()["state"] == "scheduled"


def test_a_host_token_may_only_name_an_active_prison_laptop(clinic: Clinic) -> None:
    cid = _soon(clinic)["id"]
    with session_scope(clinic.services.engine) as session:
        consultation = session.get(Consultation, cid)
        assert consultation is not None
        ticket = joining.host_join_token(
            session=session,
            jwt=clinic.services.jwt,
            consultation=consultation,
            by_user_id=clinic.host_id,
            device_id=clinic.laptop_id,
        )
        assert verify_join_token(jwt=clinic.services.jwt, token=ticket.token).device_id == clinic.laptop_id
        with pytest.raises(AccessDenied):
            joining.host_join_token(
                session=session,
                jwt=clinic.services.jwt,
                consultation=consultation,
                by_user_id=clinic.host_id,
                device_id=clinic.room_id,
            )


def test_the_room_gets_a_token_only_for_what_is_booked_for_it_now(clinic: Clinic) -> None:
    with session_scope(clinic.services.engine) as session, pytest.raises(NotFound):
        joining.room_join_token(session=session, jwt=clinic.services.jwt, device_id=clinic.room_id)
    _soon(clinic, minutes=120)  # later today: not yet
    booked = _soon(clinic)
    with session_scope(clinic.services.engine) as session:
        ticket = joining.room_join_token(session=session, jwt=clinic.services.jwt, device_id=clinic.room_id)
        assert ticket.consultation.id == booked["id"] and ticket.participant_id == "room:room-01"
        claims = verify_join_token(jwt=clinic.services.jwt, token=ticket.token)
        assert claims.role is ParticipantRole.ROOM and claims.device_id == clinic.room_id
        with pytest.raises(AccessDenied):
            joining.room_join_token(session=session, jwt=clinic.services.jwt, device_id=clinic.laptop_id)


def _posture(clinic: Clinic, device_id: str, kind: str) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    key = enrol(clinic.client, clinic.admin, device_id, kind=kind)
    resp = attest(clinic.client, device_id, key, kind=kind)
    assert resp.status_code == 200, resp.text
    passed: dict[str, Any] = resp.json()
    return key, passed


def _headers(key: Ed25519PrivateKey, passed: dict[str, Any], url: str) -> dict[str, str]:
    return proof_headers(key, passed["posture_token"], passed["token_jti"], method="POST", url=url)


def test_a_compliant_room_endpoint_joins_its_booking_without_seeing_the_patient(
    clinic: Clinic, audit: AuditTrail
) -> None:
    key, passed = _posture(clinic, "room-east", "room_endpoint")
    booked = _soon(clinic, room_device_id="room-east")
    resp = clinic.client.post(JOIN_URL, headers=_headers(key, passed, JOIN_URL))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["role"] == "room" and body["participant_id"] == "room:room-east"
    assert body["consultation"]["id"] == booked["id"] and body["consultation"]["view"] == "public"
    for secret in (PATIENT_NAME, PRISON_NUMBER, clinic.patient_id):
        assert secret not in resp.text
    issued = audit.events(consultation_id=booked["id"])[-1]
    assert (issued.action, issued.outcome, issued.actor_id) == (
        "consultation.join_token_issued",
        "success",
        "room-east",
    )


def test_a_room_endpoint_needs_posture_and_a_booking(clinic: Clinic) -> None:
    no_posture = clinic.client.post(JOIN_URL)
    assert no_posture.status_code in (401, 403) and no_posture.json()["code"]
    key, passed = _posture(clinic, "room-east", "room_endpoint")
    nothing_booked = clinic.client.post(JOIN_URL, headers=_headers(key, passed, JOIN_URL))
    assert nothing_booked.status_code == 404


def test_a_laptop_cannot_join_as_the_room(clinic: Clinic) -> None:
    key, passed = _posture(clinic, "laptop-east", "prison_laptop")
    resp = clinic.client.post(JOIN_URL, headers=_headers(key, passed, JOIN_URL))
    assert resp.status_code == 403 and resp.json()["code"] == "access_denied"


def test_a_host_on_a_compliant_laptop_gets_a_token_naming_it(clinic: Clinic) -> None:
    key, passed = _posture(clinic, "laptop-east", "prison_laptop")
    cid = _soon(clinic)["id"]
    url = f"http://testserver/api/v1/consultations/{cid}/join-token"
    resp = clinic.client.post(url, headers={**clinic.host, **_headers(key, passed, url)})
    assert resp.status_code == 200, resp.text
    claims = verify_join_token(jwt=clinic.services.jwt, token=resp.json()["token"])
    assert claims.device_id == "laptop-east" and claims.role is ParticipantRole.HOST
    # A posture token without its proof is refused rather than ignored.
    half = clinic.client.post(url, headers={**clinic.host, "X-Posture-Token": passed["posture_token"]})
    assert half.status_code in (401, 403) and half.json()["code"] != "access_denied"
