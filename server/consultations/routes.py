"""HTTP API for consultations, the host's schedule, invites and join tokens. Services decide, views filter."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from server.consultations import invites, joining, service, views
from server.consultations.models import Consultation
from server.consultations.schedule import clinician_schedule
from server.consultations.schemas import (
    CancelRequest,
    ConsentRequest,
    ConsultationCreate,
    ConsultationPrivate,
    ConsultationView,
    EndRequest,
    InviteCheckOut,
    InviteCreated,
    InviteRequest,
    JoinTicketOut,
    PatientIdentityOut,
    RedeemRequest,
    ScheduleItem,
)
from server.deps import (
    ClinicianUser,
    CompliantDevice,
    CurrentPrincipal,
    ServicesDep,
    SessionDep,
    StaffUser,
    get_compliant_device,
)
from server.devices.posture import PostureContext
from server.errors import ValidationFailed
from server.identity.models import Role, User
from server.services import Services

log = logging.getLogger("telemed.consultations")

router = APIRouter(prefix="/api/v1", tags=["consultations"])


# Refusals are committed with their audit events by the shared request session.
AuditedSession = SessionDep


def optional_device(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    posture_token: Annotated[str | None, Header(alias="X-Posture-Token")] = None,
    posture_proof: Annotated[str | None, Header(alias="X-Posture-Proof")] = None,
) -> PostureContext | None:
    """The caller's compliant device if they sent posture headers (checked as ``CompliantDevice`` does)."""
    if posture_token is None and posture_proof is None:
        return None
    return get_compliant_device(request, services, session, posture_token, posture_proof)


OptionalDevice = Annotated[PostureContext | None, Depends(optional_device)]


def _private(session: Session, consultation: Consultation, viewer: User) -> ConsultationPrivate:
    view = views.view_for(session=session, consultation=consultation, viewer=viewer)
    assert isinstance(view, ConsultationPrivate)  # noqa: S101 - only host or admin got this far
    return view


async def _close(
    services: Services, session: Session, viewer: User, close: Callable[[], Consultation], reason: str
) -> ConsultationPrivate:
    """Close a consultation (end, cancel, no-show), commit, then tell anyone still connected."""

    def run() -> ConsultationPrivate:
        consultation = close()
        session.commit()  # closed before anyone hears of it
        return _private(session, consultation, viewer)

    view = await run_in_threadpool(run)
    if services.hub is not None:
        try:
            await services.hub.consultation_ended(view.id, reason)
        except Exception:
            # The consultation is closed either way; sockets find out on their next message.
            log.exception("could not tell the signalling hub", extra={"consultation_id": view.id})
    return view


@router.post("/consultations", response_model=ConsultationView, status_code=status.HTTP_201_CREATED)
def schedule(body: ConsultationCreate, user: StaffUser, session: AuditedSession) -> ConsultationView:
    """Book a consultation (clinician or admin); the host defaults to the calling clinician."""
    host_user_id = body.host_user_id or (user.id if user.role is Role.CLINICIAN else None)
    if host_user_id is None:
        raise ValidationFailed("Name the host clinician (host_user_id)")
    consultation = service.schedule_consultation(
        session=session,
        patient_id=body.patient_id,
        host_user_id=host_user_id,
        room_device_id=body.room_device_id,
        specialist=(body.specialist.name, body.specialist.email) if body.specialist else None,
        start=body.scheduled_start,
        end=body.scheduled_end,
        created_by=user.id,
    )
    return views.view_for(session=session, consultation=consultation, viewer=user)


@router.get("/consultations", response_model=list[ConsultationView])
def list_consultations(
    user: StaffUser, session: SessionDep, day: date | None = None, mine: bool = False
) -> list[ConsultationView]:
    """List consultations in start order (a clinician's own, all for an admin), optionally for one UTC day."""
    found = service.list_consultations(session=session, user=user, day=day, mine=mine)
    return views.views_for(session=session, consultations=found, viewer=user)


@router.get("/schedule", response_model=list[ScheduleItem])
def my_schedule(
    request: Request,
    user: ClinicianUser,
    principal: CurrentPrincipal,
    session: SessionDep,
    day: Annotated[date | None, Query(description="A UTC day, YYYY-MM-DD; default today (UTC)")] = None,
) -> list[ScheduleItem]:
    """The consultations the calling clinician hosts on one UTC day, with their patients (each audited)."""
    rows = clinician_schedule(
        session=session,
        clinician=user,
        day=day,
        authority_jti=principal.jti,
        request_id=getattr(request.state, "request_id", None),
        ip=request.client.host if request.client else None,
    )
    return [views.schedule_item(row) for row in rows]


@router.get("/consultations/{consultation_id}", response_model=ConsultationView)
def get_consultation(consultation_id: str, user: StaffUser, session: SessionDep) -> ConsultationView:
    """One consultation: the private view for its host and admins, the public view for other staff."""
    consultation = service.get_consultation(session=session, consultation_id=consultation_id)
    return views.view_for(session=session, consultation=consultation, viewer=user)


@router.post("/consultations/{consultation_id}/cancel", response_model=ConsultationPrivate)
async def cancel(
    consultation_id: str, body: CancelRequest, user: StaffUser, session: AuditedSession, services: ServicesDep
) -> ConsultationPrivate:
    """Cancel a consultation before it goes live (host or admin)."""

    def close() -> Consultation:
        consultation = service.get_consultation(session=session, consultation_id=consultation_id)
        return service.cancel_consultation(
            session=session, consultation=consultation, by_user_id=user.id, reason=body.reason
        )

    return await _close(services, session, user, close, "cancelled")


@router.post("/consultations/{consultation_id}/no-show", response_model=ConsultationPrivate)
async def no_show(
    consultation_id: str, user: StaffUser, session: AuditedSession, services: ServicesDep
) -> ConsultationPrivate:
    """Record a no-show once the scheduled start has passed (host or admin)."""

    def close() -> Consultation:
        consultation = service.get_consultation(session=session, consultation_id=consultation_id)
        return service.mark_no_show(session=session, consultation=consultation, by_user_id=user.id)

    return await _close(services, session, user, close, "no_show")


@router.post("/consultations/{consultation_id}/end", response_model=ConsultationPrivate)
async def end(
    consultation_id: str,
    user: StaffUser,
    session: AuditedSession,
    services: ServicesDep,
    body: EndRequest | None = None,
) -> ConsultationPrivate:
    """End the consultation (host); everyone still connected is told and disconnected."""
    reason = (body or EndRequest()).reason

    def close() -> Consultation:
        consultation = service.get_consultation(session=session, consultation_id=consultation_id)
        return service.end_consultation(
            session=session, consultation=consultation, by_user_id=user.id, reason=reason
        )

    return await _close(services, session, user, close, reason)


@router.post("/consultations/{consultation_id}/identity-check", response_model=PatientIdentityOut)
def identity_check(consultation_id: str, user: StaffUser, session: AuditedSession) -> PatientIdentityOut:
    """The patient's name, prison number and date of birth for the host to check; records the check (host)."""
    consultation = service.get_consultation(session=session, consultation_id=consultation_id)
    identity = service.confirm_identity(session=session, consultation=consultation, by_user_id=user.id)
    assert consultation.identity_confirmed_at is not None  # noqa: S101 - just set by confirm_identity
    return PatientIdentityOut(
        consultation_id=consultation.id,
        name=identity.name,
        prison_number=identity.prison_number,
        date_of_birth=identity.date_of_birth,
        identity_confirmed_at=consultation.identity_confirmed_at,
    )


@router.post("/consultations/{consultation_id}/consent", response_model=ConsultationPrivate)
def consent(
    consultation_id: str, body: ConsentRequest, user: StaffUser, session: AuditedSession
) -> ConsultationPrivate:
    """Record the patient's verbal consent (host)."""
    consultation = service.get_consultation(session=session, consultation_id=consultation_id)
    service.record_consent(
        session=session, consultation=consultation, by_user_id=user.id, consent=body.consent, note=body.note
    )
    return _private(session, consultation, user)


@router.post(
    "/consultations/{consultation_id}/invites",
    response_model=InviteCreated,
    status_code=status.HTTP_201_CREATED,
)
def invite(
    consultation_id: str,
    user: StaffUser,
    session: AuditedSession,
    services: ServicesDep,
    body: InviteRequest | None = None,
) -> InviteCreated:
    """Invite the specialist (host or admin); the link, shown once, carries the only copy of the token."""
    body = body or InviteRequest()
    consultation = service.get_consultation(session=session, consultation_id=consultation_id)
    name = body.name or consultation.specialist_name
    if name is None:
        raise ValidationFailed("Name the specialist to invite")
    created = invites.create_invite(
        session=session,
        consultation=consultation,
        name=name,
        by_user_id=user.id,
        ttl=timedelta(minutes=body.ttl_minutes) if body.ttl_minutes else None,
    )
    return InviteCreated(
        invite_id=created.invite.id,
        name=created.invite.name,
        expires_at=created.invite.expires_at,
        link=created.link(services.settings.public_url),
    )


@router.post("/consultations/{consultation_id}/join-token", response_model=JoinTicketOut)
def host_join_token(
    consultation_id: str,
    user: StaffUser,
    session: AuditedSession,
    services: ServicesDep,
    device: OptionalDevice,
) -> JoinTicketOut:
    """A join token for the signalling socket (host only); with posture headers it names the laptop."""
    consultation = service.get_consultation(session=session, consultation_id=consultation_id)
    ticket = joining.host_join_token(
        session=session,
        jwt=services.jwt,
        consultation=consultation,
        by_user_id=user.id,
        device_id=device.device_id if device else None,
    )
    return views.ticket_out(session=session, ticket=ticket)


@router.post("/invites/check", response_model=InviteCheckOut)
def check_invite(body: RedeemRequest, session: AuditedSession) -> InviteCheckOut:
    """Check a specialist's invite without using it up: when joining opens, and who sent it."""
    checked = invites.check_invite(session=session, raw_token=body.token)
    return views.invite_check_out(session=session, checked=checked)


@router.post("/invites/redeem", response_model=JoinTicketOut)
def redeem(body: RedeemRequest, session: AuditedSession, services: ServicesDep) -> JoinTicketOut:
    """Redeem a specialist's invite, once, for a join token (no sign-in: the invite is the credential)."""
    ticket = invites.redeem_invite(session=session, jwt=services.jwt, raw_token=body.token)
    return views.ticket_out(session=session, ticket=ticket)


@router.post("/devices/me/join-token", response_model=JoinTicketOut)
def room_join_token(device: CompliantDevice, session: AuditedSession, services: ServicesDep) -> JoinTicketOut:
    """A join token for the consultation booked for this room endpoint now (posture token and proof)."""
    ticket = joining.room_join_token(session=session, jwt=services.jwt, device_id=device.device_id)
    return views.ticket_out(session=session, ticket=ticket)
