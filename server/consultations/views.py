"""What each caller may see of a consultation: the host and admins the private view, others the public one."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from records.models import Patient
from server.consultations import access
from server.consultations.invites import InviteStatus
from server.consultations.joining import JoinTicket
from server.consultations.models import Consultation
from server.consultations.schedule import ScheduledConsultation
from server.consultations.schemas import (
    ConsultationPrivate,
    ConsultationPublic,
    InviteCheckOut,
    InvitedBy,
    JoinTicketOut,
    ScheduleItem,
    SchedulePatient,
    ScheduleRoom,
)
from server.devices.rooms import room_name
from server.identity.models import User


def _names(session: Session, consultations: Sequence[Consultation]) -> dict[str, str]:
    ids = {c.host_user_id for c in consultations}
    if not ids:
        return {}
    return {u.id: u.display_name for u in session.exec(select(User).where(col(User.id).in_(ids)))}


def _prison_numbers(session: Session, consultations: Sequence[Consultation]) -> dict[str, str]:
    ids = {c.patient_id for c in consultations}
    if not ids:
        return {}
    rows = session.exec(select(Patient.id, Patient.prison_number).where(col(Patient.id).in_(ids)))
    return dict(rows.all())


def public_view(consultation: Consultation, *, host_name: str) -> ConsultationPublic:
    """The consultation as any participant may see it."""
    return ConsultationPublic(
        id=consultation.id,
        state=consultation.state,
        scheduled_start=consultation.scheduled_start,
        scheduled_end=consultation.scheduled_end,
        host_name=host_name,
        has_room=consultation.room_device_id is not None,
        has_specialist=consultation.specialist_name is not None,
    )


def private_view(consultation: Consultation, *, host_name: str, prison_number: str) -> ConsultationPrivate:
    """The consultation as its host and admins see it."""
    return ConsultationPrivate(
        id=consultation.id,
        state=consultation.state,
        scheduled_start=consultation.scheduled_start,
        scheduled_end=consultation.scheduled_end,
        host_name=host_name,
        host_user_id=consultation.host_user_id,
        patient_id=consultation.patient_id,
        patient_prison_number=prison_number,
        room_device_id=consultation.room_device_id,
        specialist_name=consultation.specialist_name,
        specialist_email=consultation.specialist_email,
        identity_confirmed_at=consultation.identity_confirmed_at,
        consent_recorded_at=consultation.consent_recorded_at,
        opened_at=consultation.opened_at,
        live_at=consultation.live_at,
        ended_at=consultation.ended_at,
        end_reason=consultation.end_reason,
        cancelled_at=consultation.cancelled_at,
        cancel_reason=consultation.cancel_reason,
        created_at=consultation.created_at,
        created_by=consultation.created_by,
    )


def sees_private(consultation: Consultation, viewer: User) -> bool:
    """True when ``viewer`` may see the private view (the host, or an admin)."""
    return access.is_host(consultation, viewer) or access.is_admin(viewer)


def views_for(
    *, session: Session, consultations: Sequence[Consultation], viewer: User
) -> list[ConsultationPrivate | ConsultationPublic]:
    """Each consultation in the view ``viewer`` is entitled to."""
    names = _names(session, consultations)
    numbers = _prison_numbers(session, [c for c in consultations if sees_private(c, viewer)])
    views: list[ConsultationPrivate | ConsultationPublic] = []
    for c in consultations:
        host_name = names.get(c.host_user_id, "")
        if sees_private(c, viewer):
            views.append(private_view(c, host_name=host_name, prison_number=numbers[c.patient_id]))
        else:
            views.append(public_view(c, host_name=host_name))
    return views


def view_for(
    *, session: Session, consultation: Consultation, viewer: User
) -> ConsultationPrivate | ConsultationPublic:
    """The consultation in the view ``viewer`` is entitled to."""
    return views_for(session=session, consultations=[consultation], viewer=viewer)[0]


def ticket_out(*, session: Session, ticket: JoinTicket) -> JoinTicketOut:
    """A join ticket for the wire, with only the public view of its consultation."""
    names = _names(session, [ticket.consultation])
    return JoinTicketOut(
        token=ticket.token,
        participant_id=ticket.participant_id,
        role=ticket.role,
        name=ticket.name,
        not_before=ticket.not_before,
        expires_at=ticket.expires_at,
        consultation=public_view(
            ticket.consultation, host_name=names.get(ticket.consultation.host_user_id, "")
        ),
    )


def invite_check_out(*, session: Session, checked: InviteStatus) -> InviteCheckOut:
    """An unspent invite for the wire: the public view of its consultation, and who sent it."""
    names = _names(session, [checked.consultation])
    inviter = checked.inviter
    return InviteCheckOut(
        status=checked.status,
        name=checked.invite.name,
        opens_at=checked.opens_at,
        opens_in_s=int(checked.opens_in.total_seconds()),
        expires_at=checked.invite.expires_at,
        consultation=public_view(
            checked.consultation, host_name=names.get(checked.consultation.host_user_id, "")
        ),
        invited_by=InvitedBy(name=inviter.name, establishment=inviter.establishment) if inviter else None,
    )


def schedule_item(row: ScheduledConsultation) -> ScheduleItem:
    """A row of the host's schedule for the wire."""
    c, patient, room = row.consultation, row.patient, row.room
    return ScheduleItem(
        id=c.id,
        state=c.state,
        scheduled_start=c.scheduled_start,
        scheduled_end=c.scheduled_end,
        patient=SchedulePatient(
            id=patient.id,
            name=patient.name,
            prison_number=patient.prison_number,
            date_of_birth=patient.date_of_birth,
        ),
        room=ScheduleRoom(id=room.id, display_name=room_name(room)) if room is not None else None,
        specialist_name=c.specialist_name,
        identity_confirmed_at=c.identity_confirmed_at,
        consent_recorded_at=c.consent_recorded_at,
    )
