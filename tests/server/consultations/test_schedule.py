"""The clinician's schedule for a day: who may ask, what it shows, and the audit of each patient shown.

On both databases (the ``clinic`` fixture runs on SQLite and on PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from records.audit.chain import AuditEntry
from records.audit.log import iter_entries
from server.db import session_scope, utcnow
from server.devices.models import DeviceKind
from server.identity.models import Role
from server.identity.service import ACCESS_AUDIENCE
from tests.server.consultations.conftest import (
    ESTABLISHMENT,
    PATIENT_DOB,
    PATIENT_NAME,
    PRISON_NUMBER,
    Clinic,
    add_device,
    add_patient,
    set_times,
)
from tests.server.factories import add_user, bearer, login

PROBLEM = "application/problem+json"
DAY = date(2031, 3, 14)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def booked(clinic: Clinic, start: datetime, *, minutes: int = 30, **over: Any) -> str:
    """Book through the API (specialist only unless told otherwise), then move it to ``start``."""
    body: dict[str, Any] = {"room_device_id": None, "specialist": {"name": "Dr Remote"}, **over}
    created = clinic.book(**body)
    set_times(clinic.services, created["id"], start=start, end=start + timedelta(minutes=minutes))
    return str(created["id"])


def schedule(clinic: Clinic, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, Any]]:
    resp = clinic.client.get("/api/v1/schedule", params=params, headers=headers or clinic.host)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    rows: list[dict[str, Any]] = resp.json()
    return rows


def reads(clinic: Clinic) -> list[AuditEntry]:
    """The ``patient.read`` entries in the audit log, in the order recorded."""
    with session_scope(clinic.services.engine) as session:
        return [e for e in iter_entries(session=session) if e.action == "patient.read"]


def test_the_host_sees_the_day_with_patient_room_and_specialist(clinic: Clinic) -> None:
    room_booking = booked(clinic, at(DAY, 9), room_device_id=clinic.room_id, specialist={"name": "Dr Remote"})
    rows = schedule(clinic, day=DAY.isoformat())
    assert rows == [
        {
            "id": room_booking,
            "state": "scheduled",
            "scheduled_start": "2031-03-14T09:00:00Z",
            "scheduled_end": "2031-03-14T09:30:00Z",
            "patient": {
                "id": clinic.patient_id,
                "name": PATIENT_NAME,
                "prison_number": PRISON_NUMBER,
                "date_of_birth": PATIENT_DOB.isoformat(),
            },
            "room": {"id": clinic.room_id, "display_name": "room-01 display"},
            "specialist_name": "Dr Remote",
            "identity_confirmed_at": None,
            "consent_recorded_at": None,
        }
    ]


def test_a_room_without_a_display_name_is_shown_by_its_id_and_no_room_is_null(clinic: Clinic) -> None:
    bare = add_device(clinic.services, "room-bare", DeviceKind.ROOM_ENDPOINT, display_name="")
    with_room = booked(clinic, at(DAY, 10), room_device_id=bare, specialist=None)
    without = booked(clinic, at(DAY, 11))
    rows = {r["id"]: r for r in schedule(clinic, day=DAY.isoformat())}
    assert rows[with_room]["room"] == {"id": "room-bare", "display_name": "room-bare"}
    assert rows[with_room]["specialist_name"] is None
    assert rows[without]["room"] is None and rows[without]["specialist_name"] == "Dr Remote"


def test_only_that_utc_day_in_start_order(clinic: Clinic) -> None:
    nine = booked(clinic, at(DAY, 9))
    midnight = booked(clinic, at(DAY, 0))
    last_second = booked(clinic, at(DAY, 23, 59) + timedelta(seconds=59))
    eight = booked(clinic, at(DAY, 8, 15))
    booked(clinic, at(DAY, 0) - timedelta(seconds=1))  # the day before
    next_day = booked(clinic, at(DAY + timedelta(days=1), 0))
    assert [r["id"] for r in schedule(clinic, day=DAY.isoformat())] == [midnight, eight, nine, last_second]
    assert [r["id"] for r in schedule(clinic, day=(DAY + timedelta(days=1)).isoformat())] == [next_day]
    assert schedule(clinic, day=(DAY + timedelta(days=2)).isoformat()) == []


def test_without_a_day_it_is_today_in_utc(clinic: Clinic) -> None:
    today = utcnow().date()
    this_morning = booked(clinic, at(today, 0, 30))
    booked(clinic, at(today + timedelta(days=1), 9))
    booked(clinic, at(today - timedelta(days=1), 9))
    assert [r["id"] for r in schedule(clinic)] == [this_morning]


def test_another_clinicians_consultations_are_not_in_my_schedule(clinic: Clinic) -> None:
    mine = booked(clinic, at(DAY, 9))
    # Booked by me for a colleague: on their schedule, not mine (the schedule is what I host).
    for_nurse = booked(clinic, at(DAY, 10), host_user_id=clinic.other_id)
    by_admin = clinic.schedule(
        clinic.admin, room_device_id=None, specialist={"name": "Dr Remote"}, host_user_id=clinic.host_id
    )
    assert by_admin.status_code == 201, by_admin.text
    set_times(clinic.services, by_admin.json()["id"], start=at(DAY, 11), end=at(DAY, 12))
    assert [r["id"] for r in schedule(clinic, day=DAY.isoformat())] == [mine, by_admin.json()["id"]]
    assert [r["id"] for r in schedule(clinic, clinic.other, day=DAY.isoformat())] == [for_nurse]


def test_state_identity_and_consent_are_shown_as_they_stand(clinic: Clinic) -> None:
    checked = clinic.book(room_device_id=None, specialist={"name": "Dr Remote"})["id"]
    assert clinic.post(f"{checked}/identity-check").status_code == 200
    assert clinic.post(f"{checked}/consent", json={}).status_code == 200
    called_off = clinic.book(room_device_id=None, specialist={"name": "Dr Remote"})["id"]
    assert clinic.post(f"{called_off}/cancel", json={"reason": "moved"}).status_code == 200
    set_times(clinic.services, checked, start=at(DAY, 9), end=at(DAY, 10))
    set_times(clinic.services, called_off, start=at(DAY, 11), end=at(DAY, 12))
    rows = {r["id"]: r for r in schedule(clinic, day=DAY.isoformat())}
    assert rows[checked]["state"] == "scheduled"
    assert rows[checked]["identity_confirmed_at"] is not None
    assert rows[checked]["consent_recorded_at"] is not None
    assert rows[called_off]["state"] == "cancelled"
    assert (
        rows[called_off]["identity_confirmed_at"] is None and rows[called_off]["consent_recorded_at"] is None
    )


def test_admins_are_refused_and_strangers_must_sign_in(clinic: Clinic) -> None:
    booked(clinic, at(DAY, 9))
    admin = clinic.client.get("/api/v1/schedule", params={"day": DAY.isoformat()}, headers=clinic.admin)
    assert admin.status_code == 403 and admin.headers["content-type"] == PROBLEM
    assert admin.json()["code"] == "access_denied" and PATIENT_NAME not in admin.text
    add_user(clinic.services, "consultant", role=Role.SPECIALIST)
    specialist = clinic.client.get(
        "/api/v1/schedule", headers=bearer(login(clinic.client, "consultant")["access_token"])
    )
    assert specialist.status_code == 403 and specialist.json()["code"] == "access_denied"
    anonymous = clinic.client.get("/api/v1/schedule")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "authentication_required"
    assert reads(clinic) == []  # nobody was shown a patient


@pytest.mark.parametrize("day", ["2031-02-30", "tomorrow", "14/03/2031", ""])
def test_a_day_that_is_not_a_date_is_a_validation_error(clinic: Clinic, day: str) -> None:
    resp = clinic.client.get("/api/v1/schedule", params={"day": day}, headers=clinic.host)
    assert resp.status_code == 422 and resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "validation_error"


def test_each_patient_shown_is_audited_with_who_why_and_which_consultation(clinic: Clinic) -> None:
    gp_id = add_user(clinic.services, "gp-hmp", display_name="Dr Gp", establishment=ESTABLISHMENT)
    second_patient = add_patient(clinic.services, prison_number="B7654CD", name="Bo Second")
    first = booked(clinic, at(DAY, 9), host_user_id=gp_id)
    second = booked(clinic, at(DAY, 10), host_user_id=gp_id, patient_id=second_patient)
    booked(clinic, at(DAY + timedelta(days=1), 9), host_user_id=gp_id)  # not shown, not audited
    token = login(clinic.client, "gp-hmp")["access_token"]
    jti = clinic.services.jwt.verify(token, audience=ACCESS_AUDIENCE)["jti"]

    resp = clinic.client.get(
        "/api/v1/schedule",
        params={"day": DAY.isoformat()},
        headers={**bearer(token), "X-Request-ID": "req-schedule-0001"},
    )
    assert resp.status_code == 200, resp.text
    assert [r["patient"]["name"] for r in resp.json()] == [PATIENT_NAME, "Bo Second"]

    entries = reads(clinic)
    assert [(e.consultation_id, e.patient_id) for e in entries] == [
        (first, clinic.patient_id),
        (second, second_patient),
    ]
    for entry in entries:
        assert entry.outcome == "allowed" and entry.purpose_of_use == "TREAT"
        assert (entry.actor_id, entry.actor_role, entry.establishment) == (gp_id, "clinician", ESTABLISHMENT)
        assert entry.authority_jti == jti and entry.request_id == "req-schedule-0001"
        assert entry.ip is not None
        assert entry.data.description is not None and "date of birth" in entry.data.description
        # The entry names the patient by id; their name and birth date stay out of the log.
        dumped = entry.model_dump_json()
        assert PATIENT_NAME not in dumped and "Bo Second" not in dumped
        assert PATIENT_DOB.isoformat() not in dumped

    # Each time the schedule is shown is another access.
    schedule(clinic, bearer(token), day=DAY.isoformat())
    assert len(reads(clinic)) == 4
    # An empty day shows no patient and records nothing.
    schedule(clinic, bearer(token), day=(DAY + timedelta(days=5)).isoformat())
    assert len(reads(clinic)) == 4
