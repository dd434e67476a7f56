"""The audit events of the consultations feature, all through ``server.audit.record_event``.

Every event is ``consultation.<event>`` (``scheduled``, ``opened``, ``started``, ``ended``,
``cancelled``, ``no_show``, ``identity_confirmed``, ``consent_recorded``, ``invite_created``,
``invite_checked``, ``invite_redeemed``, ``join_token_issued``) with outcome ``success``, or
``denied`` with the refusal's code as ``detail.reason`` when the caller was not allowed to do it then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlmodel import Session

from server.audit import record_event
from server.consultations.models import Consultation
from server.errors import AccessDenied, Conflict
from server.identity.models import User

Outcome = Literal["success", "denied"]


@dataclass(frozen=True)
class Actor:
    """Who acted, as the audit log names them."""

    id: str | None
    role: str | None

    @classmethod
    def of(cls, user: User | None, *, user_id: str | None = None) -> Actor:
        """The actor for a (possibly unknown) user."""
        if user is None:
            return cls(id=user_id, role=None)
        return cls(id=user.id, role=user.role.value)


SYSTEM = Actor(id=None, role="system")


def record(
    *,
    session: Session,
    event: str,
    outcome: Outcome,
    actor: Actor,
    consultation: Consultation | None,
    patient_id: str | None = None,
    device_id: str | None = None,
    authority_jti: str | None = None,
    data: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record one consultation event for the audit trail."""
    extra = dict(detail or {})
    if reason is not None:
        extra["reason"] = reason
    record_event(
        session=session,
        action=f"consultation.{event}",
        outcome=outcome,
        actor_id=actor.id,
        actor_role=actor.role,
        consultation_id=consultation.id if consultation is not None else None,
        patient_id=consultation.patient_id if consultation is not None else patient_id,
        device_id=device_id,
        authority_jti=authority_jti,
        purpose_of_use="TREAT",
        data=data,
        detail=extra or None,
    )


@contextmanager
def refusals_recorded(
    *,
    session: Session,
    event: str,
    actor: Actor,
    consultation: Consultation | None,
    patient_id: str | None = None,
    device_id: str | None = None,
) -> Iterator[None]:
    """Record a ``denied`` event for any refusal (access or state) raised inside, then re-raise it."""
    try:
        yield
    except (AccessDenied, Conflict) as exc:
        record(
            session=session,
            event=event,
            outcome="denied",
            actor=actor,
            consultation=consultation,
            patient_id=patient_id,
            device_id=device_id,
            reason=exc.code,
        )
        raise
