"""Who gets a join token for which consultation, and when: the host and the room endpoint.

(Specialists get theirs by redeeming an invite, see ``invites``.) Every token issued is an
audit event carrying the token's ``jti``, never the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from server.consultations import access, events
from server.consultations.errors import JoinWindowClosed
from server.consultations.join_tokens import (
    EARLY_JOIN,
    LATE_LEAVE,
    ParticipantRole,
    issue_join_token,
    join_window,
    participant_id,
)
from server.consultations.models import Consultation
from server.consultations.states import JOINABLE_STATES, Action, check
from server.db import utcnow
from server.devices.models import Device, DeviceKind, DeviceStatus
from server.errors import AccessDenied, NotFound
from server.security.jwt import JwtService, new_jti


@dataclass(frozen=True)
class JoinTicket:
    """A join token and what its bearer may know about it."""

    token: str
    consultation: Consultation
    participant_id: str
    role: ParticipantRole
    name: str
    not_before: datetime
    expires_at: datetime


def check_joinable(consultation: Consultation, now: datetime) -> None:
    """Refuse joining a consultation that is over, or whose joining window has closed."""
    check(consultation.state, Action.JOIN)
    if now > join_window(consultation)[1]:
        state = consultation.state.value
        raise JoinWindowClosed(f'Cannot join in state "{state}" after the joining window closed', state=state)


def issue_ticket(
    *,
    session: Session,
    jwt: JwtService,
    consultation: Consultation,
    role: ParticipantRole,
    ident: str,
    name: str,
    device_id: str | None,
    actor: events.Actor,
) -> JoinTicket:
    """Sign a join token for one participant and record that it was issued."""
    jti = new_jti()
    pid = participant_id(role, ident)
    token = issue_join_token(
        jwt=jwt,
        consultation=consultation,
        participant_id=pid,
        role=role,
        name=name,
        device_id=device_id,
        jti=jti,
    )
    events.record(
        session=session,
        event="join_token_issued",
        outcome="success",
        actor=actor,
        consultation=consultation,
        device_id=device_id,
        authority_jti=jti,
        detail={"participant": pid},
    )
    not_before, expires_at = join_window(consultation)
    return JoinTicket(
        token=token,
        consultation=consultation,
        participant_id=pid,
        role=role,
        name=name,
        not_before=not_before,
        expires_at=expires_at,
    )


def host_join_token(
    *,
    session: Session,
    jwt: JwtService,
    consultation: Consultation,
    by_user_id: str,
    device_id: str | None = None,
) -> JoinTicket:
    """A join token for the consultation's host, bound to the prison laptop they use (if any)."""
    user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(
        session=session,
        event="join_token_issued",
        actor=actor,
        consultation=consultation,
        device_id=device_id,
    ):
        host = access.require_host(consultation, user)
        check_joinable(consultation, utcnow())
        if device_id is not None:
            laptop = session.get(Device, device_id)
            if (
                laptop is None
                or laptop.kind is not DeviceKind.PRISON_LAPTOP
                or laptop.status is not DeviceStatus.ACTIVE
            ):
                raise AccessDenied("The host can only join from an active, enrolled prison laptop")
    return issue_ticket(
        session=session,
        jwt=jwt,
        consultation=consultation,
        role=ParticipantRole.HOST,
        ident=host.id,
        name=host.display_name,
        device_id=device_id,
        actor=actor,
    )


def room_join_token(*, session: Session, jwt: JwtService, device_id: str) -> JoinTicket:
    """A join token for the consultation booked for this room endpoint now."""
    actor = events.Actor(id=device_id, role=DeviceKind.ROOM_ENDPOINT.value)
    room = session.get(Device, device_id)
    with events.refusals_recorded(
        session=session, event="join_token_issued", actor=actor, consultation=None, device_id=device_id
    ):
        if (
            room is None
            or room.kind is not DeviceKind.ROOM_ENDPOINT
            or room.status is not DeviceStatus.ACTIVE
        ):
            raise AccessDenied("Only an active, enrolled room endpoint can join as the room")
    now = utcnow()
    consultation = session.exec(
        select(Consultation)
        .where(
            Consultation.room_device_id == device_id,
            col(Consultation.state).in_(JOINABLE_STATES),
            Consultation.scheduled_start <= now + EARLY_JOIN,
            Consultation.scheduled_end >= now - LATE_LEAVE,
        )
        .order_by(col(Consultation.scheduled_start))
    ).first()
    if consultation is None:
        raise NotFound("No consultation is booked for this device now")
    return issue_ticket(
        session=session,
        jwt=jwt,
        consultation=consultation,
        role=ParticipantRole.ROOM,
        ident=device_id,
        name=room.display_name or "Healthcare room",
        device_id=device_id,
        actor=actor,
    )
