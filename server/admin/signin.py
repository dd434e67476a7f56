"""Signing in to the admin console: password, then TOTP or a recovery code; enrolment on first use.

Both steps go through the API sign-in's throttle (``server.security.throttle``, the public
``LoginThrottle.begin`` / ``LoginAttempt``): the same counters per account + client, per
account and per client, so one set of delays covers both ways in, and a throttled attempt
answers ``429 login_throttled`` with ``Retry-After`` whether or not the account exists. A
right password only takes its own count back (``passed_first_factor``); a wrong
second-factor code, or a replayed one, counts as a failed attempt, and only a completed
second step clears the account + client counter — otherwise someone holding the password
could reset it between guesses at the code. Every attempt is audited (``admin.sign_in``,
``admin.second_factor``, ``admin.enrol``), with the account's id when the account exists and
never the text typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from server.admin import recovery, totp
from server.admin.errors import CodeReused, InvalidCode
from server.admin.events import Where, Who, record_admin
from server.admin.models import AdminSecondFactor, AdminSession, SessionStage
from server.admin.secretbox import SealedSecretUnreadable, open_totp_secret, seal_totp_secret
from server.errors import AccessDenied, InvalidCredentials, InvalidState
from server.identity.models import Role, User
from server.identity.service import LoginPolicy
from server.security.passwords import hash_password, needs_rehash, verify_password
from server.security.throttle import LoginAttempt, LoginThrottle, LoginThrottled

Method = Literal["totp", "recovery_code"]


@dataclass(frozen=True)
class PasswordAccepted:
    """The admin whose password was right, and the step that comes next."""

    user: User
    stage: SessionStage


def _who(user: User | None, session_id: str | None = None) -> Who:
    if user is None:
        return Who(user_id=None)
    return Who(user_id=user.id, establishment=user.establishment, session_id=session_id, role=user.role.value)


def _begin(
    *, session: Session, throttle: LoginThrottle, username: str, user: User | None, where: Where, action: str
) -> LoginAttempt:
    try:
        return throttle.begin(username=username, client=where.ip)
    except LoginThrottled:
        record_admin(
            session=session,
            action=action,
            outcome="denied",
            who=_who(user),
            where=where,
            detail={"reason": "login_throttled"},
        )
        raise


def has_second_factor(*, session: Session, user_id: str) -> bool:
    """Whether the user has enrolled a TOTP second factor."""
    return session.get(AdminSecondFactor, user_id) is not None


def check_password(
    *,
    session: Session,
    policy: LoginPolicy,
    throttle: LoginThrottle,
    username: str,
    password: str,
    where: Where,
    now: datetime,
) -> PasswordAccepted:
    """The first step: the password of an active admin account, unless the throttle says wait."""
    user = session.exec(select(User).where(User.username == username.strip().lower())).first()
    attempt = _begin(
        session=session, throttle=throttle, username=username, user=user, where=where, action="admin.sign_in"
    )
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        attempt.failed()
        record_admin(
            session=session,
            action="admin.sign_in",
            outcome="failure",
            who=_who(user),
            where=where,
            detail={"reason": "invalid_credentials"},
        )
        raise InvalidCredentials("Wrong username or password")
    # The password was right: not a guess, but the counters clear only after the second step.
    attempt.passed_first_factor()
    if user.role is not Role.ADMIN:
        record_admin(
            session=session,
            action="admin.sign_in",
            outcome="denied",
            who=_who(user),
            where=where,
            detail={"reason": "not_admin"},
        )
        raise AccessDenied("The admin console is only for healthcare admins")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
    stage = (
        SessionStage.SECOND_FACTOR
        if has_second_factor(session=session, user_id=user.id)
        else SessionStage.ENROL
    )
    record_admin(
        session=session,
        action="admin.sign_in",
        outcome="success",
        who=_who(user),
        where=where,
        detail={"next": stage.value},
    )
    return PasswordAccepted(user=user, stage=stage)


def _signed_in(*, session: Session, user: User, now: datetime) -> None:
    user.last_login_at = now
    session.add(user)


def _refuse_code(
    *,
    session: Session,
    attempt: LoginAttempt,
    user: User,
    row: AdminSession,
    method: Method,
    error: InvalidCode | CodeReused,
    where: Where,
) -> None:
    attempt.failed()
    record_admin(
        session=session,
        action="admin.second_factor",
        outcome="failure",
        who=_who(user, row.id),
        where=where,
        detail={"method": method, "reason": error.code},
    )
    raise error


def _accept_step(*, session: Session, user_id: str, step: int) -> bool:
    # Conditional update: of two sign-ins racing with one code, exactly one moves the step on.
    moved = session.connection().execute(
        update(AdminSecondFactor)
        .where(col(AdminSecondFactor.user_id) == user_id, col(AdminSecondFactor.last_step) < step)
        .values(last_step=step)
    )
    return moved.rowcount == 1


def check_second_factor(
    *,
    session: Session,
    policy: LoginPolicy,
    throttle: LoginThrottle,
    server_secret: bytes,
    row: AdminSession,
    code: str | None,
    recovery_code: str | None,
    where: Where,
    now: datetime,
) -> Method:
    """The second step: a TOTP code not used before, or an unused recovery code."""
    user = session.get(User, row.user_id)
    factor = session.get(AdminSecondFactor, row.user_id)
    if user is None or user.disabled or user.role is not Role.ADMIN or factor is None:
        raise InvalidState("This session cannot take a second factor", state=row.stage)
    attempt = _begin(
        session=session,
        throttle=throttle,
        username=user.username,
        user=user,
        where=where,
        action="admin.second_factor",
    )
    method: Method = "recovery_code" if recovery_code else "totp"
    if recovery_code:
        if not recovery.use_code(session=session, user_id=user.id, code=recovery_code, now=now):
            _refuse_code(
                session=session,
                attempt=attempt,
                user=user,
                row=row,
                method=method,
                where=where,
                error=InvalidCode("That recovery code is not one of yours, or it has been used"),
            )
    else:
        try:
            secret = open_totp_secret(server_secret, user_id=user.id, sealed=factor.secret_encrypted)
        except SealedSecretUnreadable:
            # The server secret changed since enrolment: only a recovery code can help now.
            secret = None
        step = totp.matching_step(secret, code or "", now=now) if secret is not None else None
        if step is None:
            _refuse_code(
                session=session,
                attempt=attempt,
                user=user,
                row=row,
                method=method,
                where=where,
                error=InvalidCode(
                    "That code is not right; check the time on your phone and try the new code"
                ),
            )
        elif not _accept_step(session=session, user_id=user.id, step=step):
            _refuse_code(
                session=session,
                attempt=attempt,
                user=user,
                row=row,
                method=method,
                where=where,
                error=CodeReused("That code has already been used; wait for the next one"),
            )
    attempt.succeeded()
    _signed_in(session=session, user=user, now=now)
    detail: dict[str, str | int] = {"method": method}
    if method == "recovery_code":
        detail["recovery_codes_left"] = recovery.codes_left(session=session, user_id=user.id)
    record_admin(
        session=session,
        action="admin.second_factor",
        outcome="success",
        who=_who(user, row.id),
        where=where,
        detail=detail,
    )
    return method


def pending_secret(*, session: Session, server_secret: bytes, row: AdminSession) -> str:
    """The TOTP secret offered to this enrolling session (made on first ask, then kept)."""
    if row.pending_secret is None:
        row.pending_secret = seal_totp_secret(server_secret, user_id=row.user_id, secret=totp.new_secret())
        session.add(row)
        session.flush()
    return open_totp_secret(server_secret, user_id=row.user_id, sealed=row.pending_secret)


def confirm_enrolment(
    *, session: Session, server_secret: bytes, row: AdminSession, code: str, where: Where, now: datetime
) -> list[str]:
    """Keep the offered secret once a code from it checks out; returns ten new recovery codes."""
    user = session.get(User, row.user_id)
    if user is None or user.disabled or user.role is not Role.ADMIN:
        raise InvalidState("This session cannot enrol a second factor", state=row.stage)
    if row.pending_secret is None:
        raise InvalidState("Show the QR code first, then enter a code from it", state=row.stage)
    if has_second_factor(session=session, user_id=user.id):
        raise InvalidState("A second factor is already enrolled for this account", state="enrolled")
    secret = open_totp_secret(server_secret, user_id=user.id, sealed=row.pending_secret)
    step = totp.matching_step(secret, code, now=now)
    if step is None:
        # Not counted towards the lock: nothing is granted by guessing at one's own new secret.
        record_admin(
            session=session,
            action="admin.enrol",
            outcome="failure",
            who=_who(user, row.id),
            where=where,
            detail={"reason": "invalid_code"},
        )
        raise InvalidCode("That code is not right; type the code your app shows now")
    session.add(
        AdminSecondFactor(
            user_id=user.id, secret_encrypted=row.pending_secret, enrolled_at=now, last_step=step
        )
    )
    codes = recovery.replace_codes(session=session, user_id=user.id)
    _signed_in(session=session, user=user, now=now)
    record_admin(
        session=session,
        action="admin.enrol",
        outcome="success",
        who=_who(user, row.id),
        where=where,
        detail={"method": "totp", "recovery_codes": len(codes)},
    )
    return codes


def reset_second_factor(*, session: Session, user_id: str) -> bool:
    """Forget a user's TOTP secret and recovery codes (they enrol again at next sign-in)."""
    factor = session.get(AdminSecondFactor, user_id)
    recovery.drop_codes(session=session, user_id=user_id)
    if factor is None:
        return False
    session.delete(factor)
    session.flush()
    return True
