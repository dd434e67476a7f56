"""Console sessions kept in the database: opened by the password, completed by the second factor.

Why rows and not a signed token: a session must end *now* when the admin signs out, is
disabled, or has their second factor reset, and the idle timeout needs the time of the last
request anyway — a self-contained token can do neither without a server-side list. The
cookie carries 256 random bits; the table stores only their SHA-256, so a copy of the table
opens no session.

* A session starts in stage ``second_factor`` (or ``enrol`` when the admin has no second
  factor yet) and must be completed within ``PENDING_LIFETIME``; only ``active`` sessions
  reach the console.
* Each change of stage issues a new token (the old cookie stops working), so a token
  planted before sign-in is worthless after it.
* An ``active`` session ends after ``idle`` without a request, and in any case ``lifetime``
  after the second factor was accepted.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from server.admin.errors import SessionExpired
from server.admin.models import AdminSession, SessionStage
from server.errors import AuthenticationRequired

PENDING_LIFETIME = timedelta(minutes=5)
_UA_MAX = 200
_IP_MAX = 100


@dataclass(frozen=True)
class SessionPolicy:
    """How long console sessions last."""

    idle: timedelta
    lifetime: timedelta


@dataclass(frozen=True)
class OpenedSession:
    """A session row and the token for its cookie (the token is never stored)."""

    row: AdminSession
    token: str

    def __repr__(self) -> str:
        return f"OpenedSession(id={self.row.id!r}, stage={self.row.stage!r})"


def token_hash(token: str) -> str:
    """What the table keeps of a session token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def open_session(
    *,
    session: Session,
    user_id: str,
    stage: SessionStage,
    now: datetime,
    ip: str | None,
    user_agent: str | None,
) -> OpenedSession:
    """Start a pending session after the password was accepted."""
    token = _new_token()
    row = AdminSession(
        token_hash=token_hash(token),
        user_id=user_id,
        stage=stage.value,
        created_at=now,
        last_seen_at=now,
        expires_at=now + PENDING_LIFETIME,
        ip=ip[:_IP_MAX] if ip else None,
        user_agent=user_agent[:_UA_MAX] if user_agent else None,
    )
    session.add(row)
    session.flush()
    return OpenedSession(row=row, token=token)


def _expired(row: AdminSession, policy: SessionPolicy, now: datetime) -> str | None:
    if row.ended_at is not None:
        return row.end_reason or "ended"
    if now >= row.expires_at:
        return "lifetime"
    idle = policy.idle if row.stage == SessionStage.ACTIVE.value else PENDING_LIFETIME
    if now - row.last_seen_at >= idle:
        return "idle"
    return None


def find_session(
    *, session: Session, token: str | None, policy: SessionPolicy, now: datetime
) -> AdminSession:
    """The live session for a cookie token; an unknown token, or one that has run out, is refused.

    A session found expired is ended here (``end_reason`` idle or lifetime), so it stays ended.
    """
    if not token:
        raise AuthenticationRequired("Sign in to the admin console")
    row = session.exec(select(AdminSession).where(AdminSession.token_hash == token_hash(token))).first()
    if row is None:
        raise AuthenticationRequired("Sign in to the admin console")
    reason = _expired(row, policy, now)
    if reason is not None:
        if row.ended_at is None:
            end_session(session=session, row=row, reason=reason, now=now)
        raise SessionExpired("Your session has ended; sign in again", reason=reason)
    return row


def touch(*, session: Session, row: AdminSession, now: datetime) -> None:
    """Record activity: the idle timeout counts from now."""
    row.last_seen_at = now
    session.add(row)


def advance(
    *, session: Session, row: AdminSession, stage: SessionStage, policy: SessionPolicy, now: datetime
) -> OpenedSession:
    """Move a session to ``stage`` under a new token; an active session's lifetime starts now."""
    token = _new_token()
    row.token_hash = token_hash(token)
    row.stage = stage.value
    row.last_seen_at = now
    row.expires_at = now + (policy.lifetime if stage is SessionStage.ACTIVE else PENDING_LIFETIME)
    row.pending_secret = None if stage is SessionStage.ACTIVE else row.pending_secret
    session.add(row)
    session.flush()
    return OpenedSession(row=row, token=token)


def end_session(*, session: Session, row: AdminSession, reason: str, now: datetime) -> None:
    """End one session (sign-out, timeout)."""
    row.ended_at = now
    row.end_reason = reason[:32]
    row.pending_secret = None
    session.add(row)


def end_by_token(*, session: Session, token: str, reason: str, now: datetime) -> None:
    """End the session a (possibly stale) cookie token names, if it is still open."""
    row = session.exec(select(AdminSession).where(AdminSession.token_hash == token_hash(token))).first()
    if row is not None and row.ended_at is None:
        end_session(session=session, row=row, reason=reason, now=now)


def end_user_sessions(*, session: Session, user_id: str, reason: str, now: datetime) -> None:
    """End every open session of a user (disabled, second factor reset)."""
    session.connection().execute(
        update(AdminSession)
        .where(col(AdminSession.user_id) == user_id, col(AdminSession.ended_at).is_(None))
        .values(ended_at=now, end_reason=reason[:32], pending_secret=None)
    )
