"""Signing in with a username and password: throttled, audited, and the same answer for everyone.

Every attempt first passes the sign-in throttle (``server.security.throttle``: growing
delays per account + client, per account and per client; ``429 login_throttled``), then
the password is checked. An unknown username, a disabled account and a wrong password all
answer ``401 invalid_credentials`` after the same Argon2 work (a dummy hash for unknown
names), and the throttle counts typed names whether or not they exist, so no answer says
whether an account exists. Every attempt is audited as ``auth.login``; see docs/audit.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session, select

from server.audit import record_event
from server.db import utcnow
from server.errors import InvalidCredentials
from server.identity.models import User, new_id
from server.identity.service import LoginPolicy, TokenPair, issue_pair
from server.security.jwt import JwtService
from server.security.passwords import hash_password, needs_rehash, verify_password
from server.security.throttle import LoginAttempt, LoginThrottle, LoginThrottled

log = logging.getLogger("telemed.identity")

ACTION = "auth.login"


@dataclass(frozen=True)
class LoginSource:
    """Where a sign-in comes from (for the throttle and the audit entry)."""

    ip: str | None
    request_id: str | None
    via: str = "api"


def find_user(*, session: Session, username: str) -> User | None:
    """The account a typed username names, if any."""
    return session.exec(select(User).where(User.username == username.strip().lower())).first()


def record_login(
    *,
    session: Session,
    outcome: str,
    reason: str | None,
    user: User | None,
    account_key: str,
    source: LoginSource,
    action: str = ACTION,
) -> None:
    """Audit one sign-in attempt: the account's id when it exists, never the typed text."""
    detail: dict[str, str] = {"account_key": account_key[:16], "via": source.via}
    if reason:
        detail["reason"] = reason
    record_event(
        session=session,
        action=action,
        outcome=outcome,
        actor_id=user.id if user else None,
        actor_role=user.role.value if user else None,
        establishment=user.establishment if user else None,
        ip=source.ip,
        request_id=source.request_id,
        detail=detail,
    )


def begin_attempt(
    *, session: Session, throttle: LoginThrottle, username: str, source: LoginSource, action: str = ACTION
) -> LoginAttempt:
    """Count an attempt with the throttle; a throttled one is audited (``denied``) and raised."""
    try:
        return throttle.begin(username=username, client=source.ip)
    except LoginThrottled:
        record_login(
            session=session,
            outcome="denied",
            reason="login_throttled",
            user=find_user(session=session, username=username),
            account_key=throttle.account_hash(username),
            source=source,
            action=action,
        )
        raise


def check_password(
    *,
    session: Session,
    attempt: LoginAttempt,
    username: str,
    password: str,
    source: LoginSource,
    action: str = ACTION,
) -> User:
    """The active account whose password this is, or ``InvalidCredentials`` (audited) for anything else."""
    user = find_user(session=session, username=username)
    # Unknown users are checked against a dummy hash: the same work, the same answer.
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        attempt.failed()
        reason = "unknown_user" if user is None else "disabled" if user.disabled else "wrong_password"
        record_login(
            session=session,
            outcome="failure",
            reason=reason,
            user=user,
            account_key=attempt.account_key,
            source=source,
            action=action,
        )
        raise InvalidCredentials("Wrong username or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
    return user


def login(
    *,
    session: Session,
    jwt: JwtService,
    policy: LoginPolicy,
    throttle: LoginThrottle,
    username: str,
    password: str,
    source: LoginSource,
) -> TokenPair:
    """Check a password and open a session; too many attempts are slowed down, never locked out."""
    attempt = begin_attempt(session=session, throttle=throttle, username=username, source=source)
    user = check_password(
        session=session, attempt=attempt, username=username, password=password, source=source
    )
    attempt.succeeded()
    user.last_login_at = utcnow()
    session.add(user)
    record_login(
        session=session,
        outcome="success",
        reason=None,
        user=user,
        account_key=attempt.account_key,
        source=source,
    )
    return issue_pair(session=session, jwt=jwt, policy=policy, user=user, family_id=new_id())
