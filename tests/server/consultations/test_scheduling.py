"""Booking consultations, listing them, and who sees what of the patient — on both databases."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest

from server.db import session_scope, utcnow
from server.devices.models import Device, DeviceKind, DeviceStatus
from server.identity.models import Role
from tests.server.consultations.audit_trail import AuditTrail
from tests.server.consultations.conftest import (
    PATIENT_NAME,
    PRISON_NUMBER,
    Clinic,
    add_device,
    add_patient,
)
from tests.server.factories import add_user, bearer, login

PROBLEM = "application/problem+json"
PRIVATE_ONLY = {"patient_id", "patient_prison_number", "room_device_id", "specialist_name", "cancel_reason"}


def test_host_books_a_room_consultation_and_sees_the_patient_by_prison_number_only(
    clinic: Clinic, audit: AuditTrail
) -> None:
    created = clinic.book()
    assert created["view"] == "private" and created["state"] == "scheduled"
    assert created["patient_prison_number"] == PRISON_NUMBER
    assert created["host_name"] == "Dr Host" and created["room_device_id"] == clinic.room_id
    assert created["identity_confirmed_at"] is None and created["consent_recorded_at"] is None
    resp = clinic.get(f"/{created['id']}")
    assert PATIENT_NAME not in resp.text and "1980-02-03" not in resp.text
    assert audit.events(consultation_id=created["id"])[0].action == "consultation.scheduled"
    assert audit.actions(consultation_id=created["id"]) == [("consultation.scheduled", "success")]


def test_a_specialist_only_booking_is_fine(clinic: Clinic) -> None:
    created = clinic.book(
        room_device_id=None, specialist={"name": "Dr Remote", "email": "remote@example.org"}
    )
    assert created["room_device_id"] is None and created["specialist_name"] == "Dr Remote"


def _window(start_h: float, end_h: float) -> dict[str, str]:
    now = utcnow()
    return {
        "scheduled_start": (now + timedelta(hours=start_h)).isoformat(),
        "scheduled_end": (now + timedelta(hours=end_h)).isoformat(),
    }


@pytest.mark.parametrize(
    ("window", "over", "message"),
    [
        ((2, 1), {}, "The end must be after the start"),
        ((1, 1), {}, "The end must be after the start"),
        ((1, 5.5), {}, "at most 4 hours"),
        ((-3, -2), {}, "already be over"),
        ((1, 2), {"room_device_id": None}, "needs a room, a specialist or both"),
        ((1, 2), {"patient_id": "nobody"}, "No such patient"),
        ((1, 2), {"room_device_id": "laptop-01"}, "active, enrolled room endpoint"),
        ((1, 2), {"room_device_id": "no-such-room"}, "active, enrolled room endpoint"),
    ],
)
def test_bookings_that_make_no_sense_are_refused(
    clinic: Clinic, window: tuple[float, float], over: dict[str, Any], message: str
) -> None:
    resp = clinic.schedule(**_window(*window), **over)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "validation_error" and message in resp.json()["detail"]


def test_exactly_four_hours_is_allowed(clinic: Clinic) -> None:
    start = utcnow() + timedelta(hours=1)
    resp = clinic.schedule(
        scheduled_start=start.isoformat(), scheduled_end=(start + timedelta(hours=4)).isoformat()
    )
    assert resp.status_code == 201, resp.text


def test_times_without_a_timezone_are_refused(clinic: Clinic) -> None:
    naive = (utcnow() + timedelta(hours=1)).replace(tzinfo=None)
    resp = clinic.schedule(
        scheduled_start=naive.isoformat(), scheduled_end=(naive + timedelta(hours=1)).isoformat()
    )
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"


def test_the_host_must_be_an_active_clinician(clinic: Clinic) -> None:
    disabled = add_user(clinic.services, "retired")
    resp = clinic.client.post(f"/api/v1/users/{disabled}/disable", headers=clinic.admin)
    assert resp.status_code == 200
    specialist_user = add_user(clinic.services, "consultant", role=Role.SPECIALIST)
    for host in (clinic.admin_id, disabled, specialist_user, "nobody"):
        resp = clinic.schedule(clinic.admin, host_user_id=host)
        assert resp.status_code == 422 and "active clinician" in resp.json()["detail"], host


def test_the_room_must_be_active_and_in_the_patients_establishment(clinic: Clinic) -> None:
    add_device(clinic.services, "room-elsewhere", DeviceKind.ROOM_ENDPOINT, establishment="HMP Elsewhere")
    resp = clinic.schedule(room_device_id="room-elsewhere")
    assert resp.status_code == 422 and "establishment" in resp.json()["detail"]
    with session_scope(clinic.services.engine) as session:
        room = session.get(Device, clinic.room_id)
        assert room is not None
        room.status = DeviceStatus.REVOKED
        session.add(room)
    assert clinic.schedule().status_code == 422


def test_a_room_cannot_be_double_booked(clinic: Clinic, audit: AuditTrail) -> None:
    first = clinic.book()
    start = utcnow() + timedelta(hours=1, minutes=30)
    overlapping = clinic.schedule(
        scheduled_start=start.isoformat(), scheduled_end=(start + timedelta(hours=1)).isoformat()
    )
    assert overlapping.status_code == 409 and overlapping.json()["code"] == "conflict"
    assert ("consultation.scheduled", "denied") in audit.actions()
    # Once the first is cancelled the room is free again.
    assert clinic.post(f"{first['id']}/cancel", json={"reason": "clinic closed"}).status_code == 200
    again = clinic.schedule(
        scheduled_start=start.isoformat(), scheduled_end=(start + timedelta(hours=1)).isoformat()
    )
    assert again.status_code == 201, again.text


def test_an_admin_books_for_a_named_host_and_must_name_one(clinic: Clinic) -> None:
    no_host = clinic.client.post(
        "/api/v1/consultations", json=clinic.body(host_user_id=None), headers=clinic.admin
    )
    assert no_host.status_code == 422 and "host" in no_host.json()["detail"]
    created = clinic.schedule(clinic.admin)
    assert created.status_code == 201 and created.json()["view"] == "private"
    assert (
        created.json()["host_user_id"] == clinic.host_id and created.json()["created_by"] == clinic.admin_id
    )


def test_a_clinician_host_defaults_to_the_caller(clinic: Clinic) -> None:
    created = clinic.book(host_user_id=None)
    assert created["host_user_id"] == clinic.host_id


def test_specialist_users_and_strangers_cannot_book(clinic: Clinic) -> None:
    add_user(clinic.services, "consultant", role=Role.SPECIALIST)
    consultant = bearer(login(clinic.client, "consultant")["access_token"])
    resp = clinic.schedule(consultant)
    assert resp.status_code == 403 and resp.json()["code"] == "access_denied"
    anonymous = clinic.client.post("/api/v1/consultations", json=clinic.body())
    assert anonymous.status_code == 401


def test_a_clinician_booking_for_a_colleague_sees_it_without_the_patient(clinic: Clinic) -> None:
    # The nurse books the GP's consultation: the nurse is not the host, so gets the public view.
    created = clinic.schedule(clinic.other)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["view"] == "public" and body["host_name"] == "Dr Host"
    assert not PRIVATE_ONLY & body.keys()
    assert PRISON_NUMBER not in created.text and clinic.patient_id not in created.text
    listed = clinic.get("", clinic.other).json()
    assert [c["view"] for c in listed] == ["public"] and PRISON_NUMBER not in str(listed)
    host_view = clinic.get(f"/{body['id']}").json()
    assert host_view["view"] == "private" and host_view["patient_prison_number"] == PRISON_NUMBER


def test_other_staff_get_the_public_view_admins_the_private_one(clinic: Clinic) -> None:
    created = clinic.book(specialist={"name": "Dr Remote"})
    other = clinic.get(f"/{created['id']}", clinic.other)
    assert other.status_code == 200
    assert other.json() == {
        "view": "public",
        "id": created["id"],
        "state": "scheduled",
        "scheduled_start": created["scheduled_start"],
        "scheduled_end": created["scheduled_end"],
        "host_name": "Dr Host",
        "has_room": True,
        "has_specialist": True,
    }
    admin = clinic.get(f"/{created['id']}", clinic.admin).json()
    assert admin["view"] == "private" and admin["patient_prison_number"] == PRISON_NUMBER
    for resp in (other, clinic.get(f"/{created['id']}", clinic.admin)):
        assert PATIENT_NAME not in resp.text
    assert clinic.get("/nope").status_code == 404


def test_lists_clinicians_see_their_own_admins_all_filtered_by_day(clinic: Clinic) -> None:
    other_patient = add_patient(clinic.services, "B9876CD", "Someone Else")
    add_device(clinic.services, "room-02", DeviceKind.ROOM_ENDPOINT)
    later_start = utcnow() + timedelta(days=2)
    today = clinic.book()
    later = clinic.book(
        scheduled_start=later_start.isoformat(), scheduled_end=(later_start + timedelta(hours=1)).isoformat()
    )
    nurses = clinic.book(host_user_id=clinic.other_id, patient_id=other_patient, room_device_id="room-02")

    def ids(headers: dict[str, str], **params: Any) -> list[str]:
        resp = clinic.get("", headers, params=params)
        assert resp.status_code == 200, resp.text
        return [c["id"] for c in resp.json()]

    # In start order; the GP hosts two and booked the third for the nurse.
    assert ids(clinic.host) == [today["id"], nurses["id"], later["id"]]
    assert ids(clinic.other) == [nurses["id"]]
    assert ids(clinic.admin) == [today["id"], nurses["id"], later["id"]]
    assert ids(clinic.admin, mine="true") == []
    day = later_start.date().isoformat()
    assert ids(clinic.host, day=day) == [later["id"]]
    assert ids(clinic.admin, day=day) == [later["id"]]
    # The GP booked the nurse's consultation but does not host it: public view, no prison number.
    views = {c["id"]: c for c in clinic.get("").json()}
    assert views[nurses["id"]]["view"] == "public" and "patient_prison_number" not in views[nurses["id"]]
    assert views[today["id"]]["patient_prison_number"] == PRISON_NUMBER
    assert clinic.get("", params={"day": "not-a-day"}).status_code == 422


def test_concurrent_bookings_of_one_room_at_one_time_book_it_once(clinic: Clinic, audit: AuditTrail) -> None:
    body = clinic.body()
    start = threading.Barrier(4)
    answers: list[httpx.Response] = []

    def book() -> None:
        start.wait()
        answers.append(clinic.client.post("/api/v1/consultations", json=body, headers=clinic.host))

    threads = [threading.Thread(target=book) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"conflict"}
    assert len(clinic.get("").json()) == 1
    assert sorted(audit.actions()) == [("consultation.scheduled", "denied")] * 3 + [
        ("consultation.scheduled", "success")
    ]
