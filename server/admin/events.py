"""Every console action is an audit entry saying who did what, and from where.

``record_admin`` writes through ``server.audit.record_event`` in the request's transaction:
the actor (the admin's user id, role ``admin``), the action (``admin.…``), the outcome, the
client IP, the request id, and in ``detail`` the browser's user agent and the console
session's public id. Services the console calls (device enrolment, break-glass review,
consultation cancel…) record their own domain entry as well; both carry the same request id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from server.audit import record_event

PURPOSE = "HSYSADMIN"
_UA_MAX = 200


@dataclass(frozen=True)
class Where:
    """Where a console request came from."""

    ip: str | None
    user_agent: str | None
    request_id: str | None


@dataclass(frozen=True)
class Who:
    """The admin acting (or trying to), and their console session."""

    user_id: str | None
    establishment: str | None = None
    session_id: str | None = None
    role: str = "admin"


def record_admin(
    *,
    session: Session,
    action: str,
    outcome: str,
    who: Who,
    where: Where,
    patient_id: str | None = None,
    device_id: str | None = None,
    consultation_id: str | None = None,
    authority_jti: str | None = None,
    description: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record one console action (who, what, outcome, IP, user agent, session, request id)."""
    extra: dict[str, Any] = dict(detail or {})
    if where.user_agent:
        extra["user_agent"] = where.user_agent[:_UA_MAX]
    if who.session_id:
        extra["session"] = who.session_id
    record_event(
        session=session,
        action=action,
        outcome=outcome,
        actor_id=who.user_id,
        actor_role=who.role if who.user_id else None,
        patient_id=patient_id,
        device_id=device_id,
        consultation_id=consultation_id,
        authority_jti=authority_jti,
        purpose_of_use=PURPOSE,
        data=description,
        ip=where.ip,
        establishment=who.establishment,
        request_id=where.request_id,
        detail=extra,
    )
