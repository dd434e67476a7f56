"""Users, refresh-token rotation and logout (sign-in is ``server.identity.login``). Knows nothing of HTTP."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from server.audit import record_event
from server.db import utcnow
from server.errors import (
    AlreadyExists,
    InvalidToken,
    NotFound,
    RefreshTokenReused,
    ValidationFailed,
)
from server.identity.models import USERNAME_PATTERN, RefreshToken, Role, User
from server.security.jwt import JwtService
from server.security.models import RevokedToken
from server.security.passwords import (
    MIN_PASSWORD_LENGTH,
    hash_password,
)

log = logging.getLogger("telemed.identity")

ACCESS_AUDIENCE = "telemed-api"


@dataclass(frozen=True)
class LoginPolicy:
    """How long tokens live (sign-in throttling: ``server.security.throttle``)."""

    access_ttl: timedelta
    refresh_ttl: timedelta


@dataclass(frozen=True)
class TokenPair:
    """What a successful login or refresh hands back."""

    access_token: str
    refresh_token: str
    expires_in: int
    user: User


def _hash_refresh(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    """A random password that satisfies the length rule, for first-run and CLI-created users."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class ChangedBy:
    """Who changes an account, as its ``user.*`` audit entry names them.

    ``actor_id`` is the admin's user id (API) or ``cli:<os user>`` (the ``telemed`` command);
    ``via`` is ``api``, ``cli`` or ``init``. The admin console passes none: it records its own
    ``admin.user.*`` entry, and one change gets one entry.
    """

    actor_id: str
    actor_role: str
    via: str


def _audit_account(
    *,
    session: Session,
    by: ChangedBy,
    action: str,
    outcome: str,
    user_id: str | None,
    detail: dict[str, str | bool | None],
) -> None:
    record_event(
        session=session,
        action=action,
        outcome=outcome,
        actor_id=by.actor_id,
        actor_role=by.actor_role,
        purpose_of_use="HSYSADMIN",
        detail={"user_id": user_id, "via": by.via, **detail},
    )


def record_refused_change(
    *, session: Session, changed_by: ChangedBy, action: str, user_id: str | None, reason: str
) -> None:
    """Record an account change that was refused (``outcome`` denied, the refusal's code as ``reason``)."""
    _audit_account(
        session=session,
        by=changed_by,
        action=action,
        outcome="denied",
        user_id=user_id,
        detail={"reason": reason},
    )


def create_user(
    *,
    session: Session,
    username: str,
    password: str,
    role: Role,
    display_name: str,
    establishment: str | None = None,
    changed_by: ChangedBy | None = None,
) -> User:
    """Create a user with a hashed password; usernames are unique (``user.create`` when ``changed_by``)."""
    try:
        user = _create_user(
            session=session,
            username=username,
            password=password,
            role=role,
            display_name=display_name,
            establishment=establishment,
        )
    except (ValidationFailed, AlreadyExists) as exc:
        if changed_by is not None:
            _audit_account(
                session=session,
                by=changed_by,
                action="user.create",
                outcome="denied",
                user_id=None,
                detail={"role": role.value, "reason": exc.code},
            )
        raise
    if changed_by is not None:
        _audit_account(
            session=session,
            by=changed_by,
            action="user.create",
            outcome="success",
            user_id=user.id,
            detail={"role": role.value},
        )
    return user


def _create_user(
    *,
    session: Session,
    username: str,
    password: str,
    role: Role,
    display_name: str,
    establishment: str | None,
) -> User:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"Passwords must be at least {MIN_PASSWORD_LENGTH} characters")
    username = username.strip().lower()
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationFailed("Usernames are 3-64 characters of a-z, 0-9 and . _ @ -")
    if not display_name.strip() or len(display_name) > 120:
        raise ValidationFailed("A display name of 1-120 characters is required")
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise AlreadyExists("A user with that username already exists")
    user = User.model_validate(
        {
            "username": username,
            "display_name": display_name,
            "role": role,
            "establishment": establishment,
            "password_hash": hash_password(password),
        }
    )
    session.add(user)
    session.flush()
    return user


def count_admins(*, session: Session) -> int:
    """How many admin accounts exist (``telemed init`` runs only on an empty system)."""
    return int(session.exec(select(func.count()).select_from(User).where(User.role == Role.ADMIN)).one())


def get_user(*, session: Session, user_id: str) -> User:
    """A user by id."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    return user


def get_user_by_username(*, session: Session, username: str) -> User:
    """A user by username."""
    user = session.exec(select(User).where(User.username == username.strip().lower())).first()
    if user is None:
        raise NotFound("No such user")
    return user


def list_users(*, session: Session, role: Role | None = None) -> list[User]:
    """All users, optionally of one role, by username."""
    query = select(User).order_by(User.username)
    if role is not None:
        query = query.where(User.role == role)
    return list(session.exec(query))


def set_disabled(
    *, session: Session, user: User, disabled: bool, changed_by: ChangedBy | None = None
) -> User:
    """Disable (or re-enable) a user; disabling ends every session (``user.disable``/``user.enable``)."""
    was = user.disabled
    user.disabled = disabled
    session.add(user)
    if disabled:
        _revoke_all_refresh(session=session, user_id=user.id)
    if changed_by is not None:
        _audit_account(
            session=session,
            by=changed_by,
            action="user.disable" if disabled else "user.enable",
            outcome="success",
            user_id=user.id,
            detail={"role": user.role.value, "changed": was != disabled},
        )
    return user


def _revoke_all_refresh(*, session: Session, user_id: str) -> None:
    now = utcnow()
    for row in session.exec(
        select(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at == None)  # noqa: E711
    ):
        row.revoked_at = now
        session.add(row)


def issue_pair(
    *, session: Session, jwt: JwtService, policy: LoginPolicy, user: User, family_id: str
) -> TokenPair:
    access = jwt.issue(
        subject=user.id,
        audience=ACCESS_AUDIENCE,
        ttl=policy.access_ttl,
        claims={"role": user.role.value, "name": user.display_name},
    )
    refresh = f"rt_{secrets.token_urlsafe(32)}"
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=_hash_refresh(refresh),
            expires_at=utcnow() + policy.refresh_ttl,
        )
    )
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=int(policy.access_ttl.total_seconds()),
        user=user,
    )


def _reused(*, session: Session, row: RefreshToken, now: datetime) -> RefreshTokenReused:
    # One statement: concurrent replays revoking the same family must not deadlock on its rows.
    session.connection().execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == row.family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    log.warning("refresh token reuse; family revoked", extra={"user_id": row.user_id})
    # Commit the revocation even though the caller gets an error.
    session.commit()
    return RefreshTokenReused()


def refresh(*, session: Session, jwt: JwtService, policy: LoginPolicy, refresh_token: str) -> TokenPair:
    """Swap a refresh token for a new pair; a second use of the same token revokes its family."""
    row = session.exec(
        select(RefreshToken).where(RefreshToken.token_hash == _hash_refresh(refresh_token))
    ).first()
    if row is None:
        raise InvalidToken("The refresh token is not valid")
    now = utcnow()
    if row.used_at is not None or row.revoked_at is not None:
        raise _reused(session=session, row=row, now=now)
    if row.expires_at <= now:
        raise InvalidToken("The refresh token has expired")
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        raise InvalidToken("The refresh token is not valid")
    # Conditional update: of concurrent uses of one token exactly one wins; the others are reuse.
    claimed = session.connection().execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.id) == row.id,
            col(RefreshToken.used_at).is_(None),
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise _reused(session=session, row=row, now=now)
    return issue_pair(session=session, jwt=jwt, policy=policy, user=user, family_id=row.family_id)


def revoke_jti(*, session: Session, jti: str, expires_at: datetime, reason: str) -> None:
    """Put a token id on the deny-list until the token would have expired anyway."""
    if session.get(RevokedToken, jti) is None:
        session.add(RevokedToken(jti=jti, expires_at=expires_at, reason=reason))


def is_revoked(*, session: Session, jti: str) -> bool:
    """True if the token id is on the deny-list."""
    return session.get(RevokedToken, jti) is not None


def logout(
    *,
    session: Session,
    user_id: str,
    access_jti: str,
    access_exp: datetime,
    refresh_token: str | None,
) -> None:
    """End a session: deny the access token and revoke its refresh family (or all of the user's)."""
    revoke_jti(session=session, jti=access_jti, expires_at=access_exp, reason="logout")
    if refresh_token:
        row = session.exec(
            select(RefreshToken).where(RefreshToken.token_hash == _hash_refresh(refresh_token))
        ).first()
        if row is not None and row.user_id == user_id:
            for sibling in session.exec(select(RefreshToken).where(RefreshToken.family_id == row.family_id)):
                if sibling.revoked_at is None:
                    sibling.revoked_at = utcnow()
                    session.add(sibling)
            return
    _revoke_all_refresh(session=session, user_id=user_id)
