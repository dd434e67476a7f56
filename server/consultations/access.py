"""Who may act on a consultation: its host, and for some actions an admin."""

from __future__ import annotations

from sqlmodel import Session

from server.consultations.events import Actor
from server.consultations.models import Consultation
from server.errors import AccessDenied
from server.identity.models import Role, User


def load_actor(*, session: Session, user_id: str) -> tuple[User | None, Actor]:
    """The acting user (None if unknown or disabled) and how the audit log names them."""
    user = session.get(User, user_id)
    if user is not None and user.disabled:
        user = None
    return user, Actor.of(user, user_id=user_id)


def is_host(consultation: Consultation, user: User | None) -> bool:
    """True when ``user`` hosts ``consultation``."""
    return user is not None and user.id == consultation.host_user_id


def is_admin(user: User | None) -> bool:
    """True for an active healthcare admin."""
    return user is not None and user.role is Role.ADMIN


def require_host(consultation: Consultation, user: User | None) -> User:
    """Let only the consultation's host through."""
    if user is None or not is_host(consultation, user):
        raise AccessDenied("Only the consultation's host may do this")
    return user


def require_host_or_admin(consultation: Consultation, user: User | None) -> User:
    """Let the consultation's host or an admin through."""
    if user is None or not (is_host(consultation, user) or is_admin(user)):
        raise AccessDenied("Only the consultation's host or an admin may do this")
    return user
