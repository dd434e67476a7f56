"""Accounts for the console: create with a one-time password, disable, re-enable, reset the second factor.

Accounts themselves are ``server.identity.service``; this adds what the console needs on top:
whether each admin has a second factor, the rule that an admin never disables their own
account, and ending console sessions along with API sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from server.admin import sessions as admin_sessions
from server.admin.errors import OwnAccount
from server.admin.models import AdminSecondFactor
from server.admin.signin import reset_second_factor
from server.identity import service as identity
from server.identity.models import Role, User


@dataclass(frozen=True)
class Account:
    """A user as the console lists them."""

    user: User
    second_factor: bool


def list_accounts(*, session: Session) -> list[Account]:
    """Every user by username, with whether they have enrolled a second factor."""
    enrolled = set(session.exec(select(AdminSecondFactor.user_id)).all())
    return [Account(user=u, second_factor=u.id in enrolled) for u in identity.list_users(session=session)]


def create_account(
    *, session: Session, username: str, display_name: str, role: Role, establishment: str | None
) -> tuple[User, str]:
    """Create a user with a random first password; returns it (shown once, to hand over)."""
    password = identity.generate_password()
    user = identity.create_user(
        session=session,
        username=username,
        password=password,
        role=role,
        display_name=display_name,
        establishment=establishment,
    )
    return user, password


def set_enabled(*, session: Session, acting_user_id: str, user_id: str, enabled: bool, now: datetime) -> User:
    """Disable or re-enable an account; disabling ends its API and console sessions at once."""
    user = identity.get_user(session=session, user_id=user_id)
    if not enabled and user.id == acting_user_id:
        raise OwnAccount("You cannot disable your own account; ask another admin")
    identity.set_disabled(session=session, user=user, disabled=not enabled)
    if not enabled:
        admin_sessions.end_user_sessions(session=session, user_id=user.id, reason="disabled", now=now)
    session.flush()
    return user


def reset_factor(*, session: Session, user_id: str, now: datetime) -> tuple[User, bool]:
    """Forget the account's second factor and recovery codes; its console sessions end."""
    user = identity.get_user(session=session, user_id=user_id)
    had = reset_second_factor(session=session, user_id=user.id)
    admin_sessions.end_user_sessions(session=session, user_id=user.id, reason="second_factor_reset", now=now)
    return user, had


def has_factor(*, session: Session, user_id: str) -> bool:
    """Whether this user has a second factor."""
    return (
        session.exec(
            select(col(AdminSecondFactor.user_id)).where(AdminSecondFactor.user_id == user_id)
        ).first()
        is not None
    )
