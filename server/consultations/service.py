"""Consultations: scheduling, listing and the life cycle from scheduled to ended. Knows nothing of HTTP.

The signalling hub calls ``get_consultation``, ``mark_host_present``, ``start_consultation``
and ``end_consultation``; the REST routes call the rest. Every change and every refusal
is an audit event (see ``events``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, NamedTuple

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from records.grants import revoke_consultation_grants
from records.models import Patient
from server.consultations import access, events
from server.consultations.errors import NotYetDue
from server.consultations.models import Consultation
from server.consultations.states import Action, ConsultationState, check, check_ready_to_start
from server.db import utcnow
from server.devices.models import Device, DeviceKind, DeviceStatus
from server.errors import AccessDenied, Conflict, NotFound, ValidationFailed
from server.identity.models import Role, User

MAX_DURATION = timedelta(hours=4)
ConsentKind = Literal["verbal"]
# States in which a booking still holds its room.
_ACTIVE_STATES = (ConsultationState.SCHEDULED, ConsultationState.OPEN, ConsultationState.LIVE)


class Specialist(NamedTuple):
    """The remote specialist a consultation is booked with (invited separately)."""

    name: str
    email: str | None = None


@dataclass(frozen=True)
class PatientIdentity:
    """What the host reads out to confirm who is in front of the camera."""

    name: str
    prison_number: str
    date_of_birth: date


def get_consultation(*, session: Session, consultation_id: str) -> Consultation:
    """A consultation by id."""
    consultation = session.get(Consultation, consultation_id)
    if consultation is None:
        raise NotFound("No such consultation")
    return consultation


def _check_window(start: datetime, end: datetime, now: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("Start and end must carry a timezone")
    if end <= start:
        raise ValidationFailed("The end must be after the start")
    if end - start > MAX_DURATION:
        raise ValidationFailed("A consultation may last at most 4 hours")
    if end <= now:
        raise ValidationFailed("The consultation would already be over")


def _check_host(session: Session, host_user_id: str) -> User:
    host = session.get(User, host_user_id)
    if host is None or host.disabled or host.role is not Role.CLINICIAN:
        raise ValidationFailed("The host must be an active clinician")
    return host


def _check_room(
    session: Session, room_device_id: str, start: datetime, end: datetime, patient: Patient
) -> Device:
    room = session.get(Device, room_device_id)
    if room is None or room.status is not DeviceStatus.ACTIVE or room.kind is not DeviceKind.ROOM_ENDPOINT:
        raise ValidationFailed("The room must be an active, enrolled room endpoint")
    if room.establishment and room.establishment != patient.establishment:
        raise ValidationFailed("The room is not in the patient's establishment")
    # Lock the room before looking for clashes: a no-op UPDATE takes its row lock on PostgreSQL
    # and the write lock on SQLite, so a concurrent booking waits and then sees this one.
    session.connection().execute(
        update(Device).where(col(Device.id) == room_device_id).values(display_name=col(Device.display_name))
    )
    clash = session.exec(
        select(Consultation.id).where(
            Consultation.room_device_id == room_device_id,
            col(Consultation.state).in_(_ACTIVE_STATES),
            Consultation.scheduled_start < end,
            Consultation.scheduled_end > start,
        )
    ).first()
    if clash is not None:
        raise Conflict("The room is already booked for part of that time")
    return room


def schedule_consultation(
    *,
    session: Session,
    patient_id: str,
    host_user_id: str,
    room_device_id: str | None,
    specialist: Specialist | tuple[str, str | None] | None,
    start: datetime,
    end: datetime,
    created_by: str,
) -> Consultation:
    """Book a consultation for a patient with a host clinician and a room and/or a specialist."""
    creator, actor = access.load_actor(session=session, user_id=created_by)
    with events.refusals_recorded(
        session=session, event="scheduled", actor=actor, consultation=None, patient_id=patient_id
    ):
        if creator is None or creator.role not in (Role.CLINICIAN, Role.ADMIN):
            raise AccessDenied("Only clinicians and admins may schedule consultations")
        _check_window(start, end, utcnow())
        if room_device_id is None and specialist is None:
            raise ValidationFailed("A consultation needs a room, a specialist or both")
        patient = session.get(Patient, patient_id)
        if patient is None:
            raise ValidationFailed("No such patient")
        _check_host(session, host_user_id)
        if room_device_id is not None:
            _check_room(session, room_device_id, start, end, patient)
    guest = Specialist(*specialist) if specialist is not None else None
    consultation = Consultation(
        patient_id=patient_id,
        host_user_id=host_user_id,
        room_device_id=room_device_id,
        specialist_name=guest.name if guest else None,
        specialist_email=guest.email if guest else None,
        scheduled_start=start.astimezone(UTC),
        scheduled_end=end.astimezone(UTC),
        created_by=created_by,
    )
    session.add(consultation)
    session.flush()
    events.record(
        session=session,
        event="scheduled",
        outcome="success",
        actor=actor,
        consultation=consultation,
        device_id=room_device_id,
    )
    return consultation


def list_consultations(
    *, session: Session, user: User, day: date | None = None, mine: bool = False
) -> list[Consultation]:
    """Consultations in start order: a clinician's own (hosted or booked), or all for an admin."""
    query = select(Consultation).order_by(col(Consultation.scheduled_start), col(Consultation.id))
    if user.role is Role.CLINICIAN or (user.role is Role.ADMIN and mine):
        query = query.where(
            or_(col(Consultation.host_user_id) == user.id, col(Consultation.created_by) == user.id)
        )
    elif user.role is not Role.ADMIN:
        raise AccessDenied("Only clinicians and admins may list consultations")
    if day is not None:
        first = datetime.combine(day, time.min, tzinfo=UTC)
        query = query.where(
            Consultation.scheduled_start >= first, Consultation.scheduled_start < first + timedelta(days=1)
        )
    return list(session.exec(query))


def _save(session: Session, consultation: Consultation) -> Consultation:
    session.add(consultation)
    session.flush()
    return consultation


def _move(
    session: Session,
    consultation: Consultation,
    next_state: Callable[[Consultation], ConsultationState],
) -> ConsultationState:
    """Set the state ``next_state`` allows (it raises to refuse); return the state moved from.

    A compare-and-set on the state column: of two transitions racing from the same state
    (the host ends while an admin cancels) one is written, and the other is checked again
    against the state it lost to, and refused naming it if no longer allowed. A plain flush
    would let both succeed, the last write win, and the audit trail record both.
    """
    while True:
        previous = consultation.state
        target = next_state(consultation)
        moved = session.connection().execute(
            update(Consultation)
            .where(col(Consultation.id) == consultation.id, col(Consultation.state) == previous)
            .values(state=target)
        )
        if moved.rowcount == 1:
            consultation.state = target
            return previous
        session.refresh(consultation)


def mark_host_present(*, session: Session, consultation: Consultation) -> Consultation:
    """The host's socket is authenticated: scheduled → open (nothing to do if already open or live)."""
    if consultation.state in (ConsultationState.OPEN, ConsultationState.LIVE):
        return consultation
    actor = events.Actor(id=consultation.host_user_id, role=Role.CLINICIAN.value)
    with events.refusals_recorded(session=session, event="opened", actor=actor, consultation=consultation):
        previous = _move(session, consultation, _open_state)
    if previous is not ConsultationState.SCHEDULED:
        return consultation  # another socket of the host opened it first
    consultation.opened_at = utcnow()
    _save(session, consultation)
    events.record(session=session, event="opened", outcome="success", actor=actor, consultation=consultation)
    return consultation


def _open_state(consultation: Consultation) -> ConsultationState:
    if consultation.state in (ConsultationState.OPEN, ConsultationState.LIVE):
        return consultation.state
    return check(consultation.state, Action.OPEN)


def start_consultation(*, session: Session, consultation: Consultation, by_user_id: str) -> Consultation:
    """The host goes live (open → live); needs identity confirmed and consent recorded."""
    user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(session=session, event="started", actor=actor, consultation=consultation):
        access.require_host(consultation, user)
        _move(
            session,
            consultation,
            lambda c: check_ready_to_start(
                state=c.state, identity_confirmed=c.identity_confirmed, consent_recorded=c.consent_recorded
            ),
        )
    consultation.live_at = utcnow()
    _save(session, consultation)
    events.record(session=session, event="started", outcome="success", actor=actor, consultation=consultation)
    return consultation


def end_consultation(
    *, session: Session, consultation: Consultation, by_user_id: str | None, reason: str
) -> Consultation:
    """End the call (open|live → ended), by its host or by the system (``by_user_id=None``)."""
    user, actor = (None, events.SYSTEM)
    if by_user_id is not None:
        user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(session=session, event="ended", actor=actor, consultation=consultation):
        if by_user_id is not None:
            access.require_host(consultation, user)
        _move(session, consultation, lambda c: check(c.state, Action.END))
    consultation.ended_at = utcnow()
    consultation.ended_by = by_user_id
    consultation.end_reason = reason[:200]
    _save(session, consultation)
    revoke_consultation_grants(session=session, consultation_id=consultation.id)  # records stop now
    events.record(
        session=session,
        event="ended",
        outcome="success",
        actor=actor,
        consultation=consultation,
        detail={"reason": consultation.end_reason},
    )
    return consultation


def cancel_consultation(
    *, session: Session, consultation: Consultation, by_user_id: str, reason: str
) -> Consultation:
    """Call a consultation off before it goes live (host or admin)."""
    user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(session=session, event="cancelled", actor=actor, consultation=consultation):
        access.require_host_or_admin(consultation, user)
        _move(session, consultation, lambda c: check(c.state, Action.CANCEL))
    consultation.cancelled_at = utcnow()
    consultation.cancelled_by = by_user_id
    consultation.cancel_reason = reason
    _save(session, consultation)
    events.record(
        session=session, event="cancelled", outcome="success", actor=actor, consultation=consultation
    )
    return consultation


def mark_no_show(*, session: Session, consultation: Consultation, by_user_id: str) -> Consultation:
    """Record that the consultation did not happen (host or admin, once its start time has passed)."""
    user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(session=session, event="no_show", actor=actor, consultation=consultation):
        access.require_host_or_admin(consultation, user)
        _move(session, consultation, _no_show_state)
    # A no-show closes the booking the way an end does; the state says which it was.
    consultation.ended_at = utcnow()
    consultation.ended_by = by_user_id
    consultation.end_reason = "no show"
    _save(session, consultation)
    events.record(session=session, event="no_show", outcome="success", actor=actor, consultation=consultation)
    return consultation


def _no_show_state(consultation: Consultation) -> ConsultationState:
    new_state = check(consultation.state, Action.NO_SHOW)
    if utcnow() < consultation.scheduled_start:
        state = consultation.state.value
        raise NotYetDue(f'Cannot mark no-show in state "{state}" before the scheduled start', state=state)
    return new_state


def confirm_identity(*, session: Session, consultation: Consultation, by_user_id: str) -> PatientIdentity:
    """Record that the host checked the patient's identity; returns the details to check against."""
    user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(
        session=session, event="identity_confirmed", actor=actor, consultation=consultation
    ):
        access.require_host(consultation, user)
        check(consultation.state, Action.CONFIRM_IDENTITY)
    patient = session.get(Patient, consultation.patient_id)
    if patient is None:  # the foreign key makes this a broken database, not a caller's mistake
        raise NotFound("No such patient")
    consultation.identity_confirmed_at = utcnow()
    consultation.identity_confirmed_by = by_user_id
    _save(session, consultation)
    events.record(
        session=session,
        event="identity_confirmed",
        outcome="success",
        actor=actor,
        consultation=consultation,
        data="patient identity: name, prison number, date of birth",
    )
    return PatientIdentity(
        name=patient.name, prison_number=patient.prison_number, date_of_birth=patient.date_of_birth
    )


def record_consent(
    *,
    session: Session,
    consultation: Consultation,
    by_user_id: str,
    consent: ConsentKind,
    note: str | None,
) -> Consultation:
    """Record the patient's consent to the video consultation, as taken by the host."""
    user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(
        session=session, event="consent_recorded", actor=actor, consultation=consultation
    ):
        access.require_host(consultation, user)
        check(consultation.state, Action.RECORD_CONSENT)
    if consent != "verbal":
        raise ValidationFailed("Only verbal consent can be recorded")
    consultation.consent_recorded_at = utcnow()
    consultation.consent_recorded_by = by_user_id
    consultation.consent_kind = consent
    consultation.consent_note = note
    _save(session, consultation)
    events.record(
        session=session,
        event="consent_recorded",
        outcome="success",
        actor=actor,
        consultation=consultation,
        detail={"consent": consent},
    )
    return consultation
