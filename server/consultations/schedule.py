"""A clinician's day: the consultations they host, with who each patient is. Knows nothing of HTTP.

This is the one list that names patients (name and date of birth, not only the prison
number), so that the clinician can tell the day's patients apart. Showing them is an access
to patient data: each patient shown is a ``patient.read`` audit event, in the caller's
transaction, so the list is never returned unaudited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session, col, select

from records.models import Patient
from server.audit import record_event
from server.consultations.models import Consultation
from server.db import utcnow
from server.devices.models import Device
from server.errors import AccessDenied
from server.identity.models import Role, User

READ_ACTION = "patient.read"
SHOWN = "name, prison number, date of birth (clinician's schedule)"


@dataclass(frozen=True)
class ScheduledConsultation:
    """One row of a clinician's day: the consultation, its patient and its room (if any)."""

    consultation: Consultation
    patient: Patient
    room: Device | None


def utc_day_bounds(day: date) -> tuple[datetime, datetime]:
    """The first instant of ``day`` in UTC and the first instant of the next day."""
    first = datetime.combine(day, time.min, tzinfo=UTC)
    return first, first + timedelta(days=1)


def clinician_schedule(
    *,
    session: Session,
    clinician: User,
    day: date | None = None,
    authority_jti: str | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> list[ScheduledConsultation]:
    """The consultations ``clinician`` hosts starting on ``day`` (UTC, default today), in start order."""
    if clinician.role is not Role.CLINICIAN:
        raise AccessDenied("Only clinicians have a schedule")
    first, after = utc_day_bounds(day or utcnow().date())
    query = (
        select(Consultation, Patient, Device)
        .join(Patient, col(Patient.id) == col(Consultation.patient_id))
        .outerjoin(Device, col(Device.id) == col(Consultation.room_device_id))
        .where(
            col(Consultation.host_user_id) == clinician.id,
            col(Consultation.scheduled_start) >= first,
            col(Consultation.scheduled_start) < after,
        )
        .order_by(col(Consultation.scheduled_start), col(Consultation.id))
    )
    rows = [ScheduledConsultation(consultation=c, patient=p, room=d) for c, p, d in session.exec(query).all()]
    for row in rows:
        # One entry per row, not per distinct patient: each names the consultation it served.
        record_event(
            session=session,
            action=READ_ACTION,
            outcome="allowed",
            actor_id=clinician.id,
            actor_role=clinician.role.value,
            consultation_id=row.consultation.id,
            patient_id=row.patient.id,
            authority_jti=authority_jti,
            purpose_of_use="TREAT",
            data=SHOWN,
            ip=ip,
            establishment=clinician.establishment,
            request_id=request_id,
            detail={"view": "schedule"},
        )
    return rows
