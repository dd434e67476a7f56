"""Single-use, expiring invites that bring a remote specialist into a consultation.

The raw token (256 random bits) is shown once, inside the link
``{public_url}/join#<token>`` — after the ``#`` so it never reaches a server log — and
only its SHA-256 is stored. Redeeming it once gives the specialist a join token.
Checking it (``check_invite``) does not use it up: the specialist's page checks the link
when it opens, lets them test their camera and sound — the day before if they like — and
redeems it only when they join.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from server.consultations import access, events
from server.consultations.errors import InviteExpired, InviteInvalid, InviteUsed
from server.consultations.join_tokens import ParticipantRole, join_window, participant_id
from server.consultations.joining import JoinTicket, check_joinable, issue_ticket
from server.consultations.models import Consultation, Invite
from server.consultations.states import Action, check
from server.db import utcnow
from server.errors import TelemedError
from server.identity.models import User
from server.security.jwt import JwtService

TOKEN_PREFIX = "inv_"  # noqa: S105 - a recognisable prefix for secret scanners, not a secret
_MAX_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class NewInvite:
    """A freshly created invite and its raw token (shown once, never stored)."""

    invite: Invite
    token: str

    def link(self, public_url: str) -> str:
        """The link to send the specialist; the token sits in the fragment, out of server logs."""
        return f"{public_url.rstrip('/')}/join#{self.token}"


def hash_token(raw_token: str) -> str:
    """The stored form of an invite token."""
    return hashlib.sha256(raw_token.encode()).hexdigest()


def create_invite(
    *,
    session: Session,
    consultation: Consultation,
    name: str,
    by_user_id: str,
    ttl: timedelta | None = None,
) -> NewInvite:
    """Invite a specialist by name (host or admin); expires after ``ttl`` or when joining closes."""
    user, actor = access.load_actor(session=session, user_id=by_user_id)
    with events.refusals_recorded(
        session=session, event="invite_created", actor=actor, consultation=consultation
    ):
        access.require_host_or_admin(consultation, user)
        check(consultation.state, Action.INVITE)
        check_joinable(consultation, utcnow())
    if ttl is not None and ttl <= timedelta(0):
        raise ValueError("an invite must live a positive time")
    closes = join_window(consultation)[1]
    expires_at = min(utcnow() + ttl, closes) if ttl is not None else closes
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    invite = Invite(
        consultation_id=consultation.id,
        name=name,
        token_hash=hash_token(token),
        created_by=by_user_id,
        expires_at=expires_at,
    )
    session.add(invite)
    session.flush()
    events.record(
        session=session,
        event="invite_created",
        outcome="success",
        actor=actor,
        consultation=consultation,
        detail={"invite_id": invite.id},
    )
    return NewInvite(invite=invite, token=token)


@dataclass(frozen=True)
class Inviter:
    """Who sent the invite, so a specialist whose link does not work knows whom to ask."""

    name: str
    establishment: str | None

    def as_problem_member(self) -> dict[str, str | None]:
        """The inviter as the ``invited_by`` member of a refusal's problem document."""
        return {"name": self.name, "establishment": self.establishment}


@dataclass(frozen=True)
class InviteStatus:
    """An unspent invite as its holder may know it, before joining."""

    invite: Invite
    consultation: Consultation
    inviter: Inviter | None
    status: Literal["early", "open"]
    opens_at: datetime
    opens_in: timedelta


def _inviter(session: Session, invite: Invite) -> Inviter | None:
    user = session.get(User, invite.created_by)
    return Inviter(name=user.display_name, establishment=user.establishment) if user is not None else None


def _find(session: Session, raw_token: str, *, event: str) -> tuple[Invite, Consultation]:
    """The invite behind a raw token and its consultation; unknown tokens are refused (and audited)."""
    invite = None
    if raw_token.startswith(TOKEN_PREFIX) and len(raw_token) <= _MAX_TOKEN_LENGTH:
        invite = session.exec(select(Invite).where(Invite.token_hash == hash_token(raw_token))).first()
    if invite is None:
        events.record(
            session=session,
            event=event,
            outcome="denied",
            actor=events.Actor(id=None, role=ParticipantRole.SPECIALIST.value),
            consultation=None,
            reason=InviteInvalid.code,
        )
        raise InviteInvalid("The invite link is not valid")
    consultation = session.get(Consultation, invite.consultation_id)
    assert consultation is not None  # noqa: S101 - the foreign key guarantees it
    return invite, consultation


def _specialist(invite: Invite) -> events.Actor:
    return events.Actor(
        id=participant_id(ParticipantRole.SPECIALIST, invite.id), role=ParticipantRole.SPECIALIST.value
    )


def _check_usable(
    *, invite: Invite, consultation: Consultation, inviter: Inviter | None, now: datetime
) -> None:
    """Refuse a used or expired invite, or one for a consultation that can no longer be joined.

    The refusal names the inviter (``invited_by``): the holder of the link may know who sent it.
    """
    try:
        if invite.used_at is not None:
            raise InviteUsed("The invite link has already been used; ask the clinician for a new one")
        if invite.expires_at <= now:
            raise InviteExpired("The invite link has expired; ask the clinician for a new one")
        check_joinable(consultation, now)
    except TelemedError as exc:
        if inviter is not None:
            exc.extra["invited_by"] = inviter.as_problem_member()
        raise


def check_invite(*, session: Session, raw_token: str) -> InviteStatus:
    """Check an invite without using it: when its consultation opens for joining, and who sent it."""
    invite, consultation = _find(session, raw_token, event="invite_checked")
    actor = _specialist(invite)
    inviter = _inviter(session, invite)
    now = utcnow()
    with events.refusals_recorded(
        session=session, event="invite_checked", actor=actor, consultation=consultation
    ):
        _check_usable(invite=invite, consultation=consultation, inviter=inviter, now=now)
    events.record(
        session=session,
        event="invite_checked",
        outcome="success",
        actor=actor,
        consultation=consultation,
        detail={"invite_id": invite.id},
    )
    opens_at = join_window(consultation)[0]
    opens_in = max(opens_at - now, timedelta(0))
    return InviteStatus(
        invite=invite,
        consultation=consultation,
        inviter=inviter,
        status="early" if opens_in > timedelta(0) else "open",
        opens_at=opens_at,
        opens_in=opens_in,
    )


def redeem_invite(*, session: Session, jwt: JwtService, raw_token: str) -> JoinTicket:
    """Use an invite once for the specialist's join token; used, expired or unknown invites are refused."""
    invite, consultation = _find(session, raw_token, event="invite_redeemed")
    actor = _specialist(invite)
    inviter = _inviter(session, invite)
    now = utcnow()
    with events.refusals_recorded(
        session=session, event="invite_redeemed", actor=actor, consultation=consultation
    ):
        _check_usable(invite=invite, consultation=consultation, inviter=inviter, now=now)
        # Conditional update: of two concurrent redemptions exactly one wins.
        claimed = session.connection().execute(
            update(Invite)
            .where(col(Invite.id) == invite.id, col(Invite.used_at).is_(None))
            .values(used_at=now)
        )
        if claimed.rowcount != 1:
            lost = InviteUsed("The invite link has already been used; ask the clinician for a new one")
            if inviter is not None:
                lost.extra["invited_by"] = inviter.as_problem_member()
            raise lost
    session.refresh(invite)
    events.record(
        session=session,
        event="invite_redeemed",
        outcome="success",
        actor=actor,
        consultation=consultation,
        detail={"invite_id": invite.id},
    )
    return issue_ticket(
        session=session,
        jwt=jwt,
        consultation=consultation,
        role=ParticipantRole.SPECIALIST,
        ident=invite.id,
        name=invite.name,
        device_id=None,
        actor=actor,
    )
