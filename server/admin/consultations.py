"""The day's consultations across clinicians, for the console (listing is the consultations service).

An admin sees the private view's facts — host, patient's prison number (never the name),
room, times, state — and may cancel (scheduled or open) or mark a no-show (scheduled or
open, once the start has passed): ``server.consultations.service`` decides and audits both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from records.models import Patient
from server.consultations import service
from server.consultations.models import Consultation
from server.consultations.states import ConsultationState
from server.devices.models import Device
from server.identity.models import User

_CANCELLABLE = (ConsultationState.SCHEDULED, ConsultationState.OPEN)


@dataclass(frozen=True)
class DayItem:
    """A consultation with the names the console shows and what an admin may do with it now."""

    consultation: Consultation
    host_name: str
    prison_number: str
    room_name: str | None
    can_cancel: bool
    can_mark_no_show: bool


def day_list(*, session: Session, admin: User, day: date, now: datetime) -> list[DayItem]:
    """Every consultation starting on ``day`` (UTC), in start order, with host, patient and room."""
    found = service.list_consultations(session=session, user=admin, day=day)
    host_ids = {c.host_user_id for c in found}
    patient_ids = {c.patient_id for c in found}
    room_ids = {c.room_device_id for c in found if c.room_device_id}
    hosts = dict(session.exec(select(User.id, User.display_name).where(col(User.id).in_(host_ids))).all())
    numbers = dict(
        session.exec(select(Patient.id, Patient.prison_number).where(col(Patient.id).in_(patient_ids))).all()
    )
    rooms = {
        d.id: d.display_name or d.id for d in session.exec(select(Device).where(col(Device.id).in_(room_ids)))
    }
    items: list[DayItem] = []
    for c in found:
        open_now = c.state in _CANCELLABLE
        items.append(
            DayItem(
                consultation=c,
                host_name=hosts.get(c.host_user_id, c.host_user_id),
                prison_number=numbers.get(c.patient_id, c.patient_id),
                room_name=rooms.get(c.room_device_id or ""),
                can_cancel=open_now,
                can_mark_no_show=open_now and c.scheduled_start <= now,
            )
        )
    return items


def cancel(*, session: Session, admin: User, consultation_id: str, reason: str) -> Consultation:
    """Cancel a consultation (audited as consultation.cancelled by the service)."""
    consultation = service.get_consultation(session=session, consultation_id=consultation_id)
    return service.cancel_consultation(
        session=session, consultation=consultation, by_user_id=admin.id, reason=reason
    )


def no_show(*, session: Session, admin: User, consultation_id: str) -> Consultation:
    """Mark a no-show (audited as consultation.no_show by the service)."""
    consultation = service.get_consultation(session=session, consultation_id=consultation_id)
    return service.mark_no_show(session=session, consultation=consultation, by_user_id=admin.id)
