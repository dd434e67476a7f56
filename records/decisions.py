"""Every access decision goes to the audit log: ``allow`` records, ``refuse`` records and raises.

A refusal is committed before the error propagates: the request's transaction is rolled
back on error, and a denied access that left no trace would defeat the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlmodel import Session

from records.audit.chain import AuditEntry
from records.audit.log import EventFields, append_entry
from records.errors import RecordsError
from records.ports import RequestMeta

__all__ = ["Who", "allow", "refuse"]


@dataclass(frozen=True)
class Who:
    """The acting party, as the audit log names it."""

    actor_id: str | None
    actor_role: str | None
    establishment: str | None = None
    device_id: str | None = None


def _event(
    *,
    who: Who,
    meta: RequestMeta | None,
    action: str,
    outcome: str,
    authority_jti: str | None,
    patient_id: str | None,
    document_ids: Iterable[str],
    consultation_id: str | None,
    purpose_of_use: str | None,
    description: str | None,
    detail: Mapping[str, Any] | None,
) -> EventFields:
    return EventFields(
        action=action,
        outcome=outcome,
        actor_id=who.actor_id,
        actor_role=who.actor_role,
        authority_jti=authority_jti,
        patient_id=patient_id,
        document_ids=tuple(document_ids),
        description=description,
        purpose_of_use=purpose_of_use,
        device_id=who.device_id,
        ip=(meta.ip[:100] if meta and meta.ip else None),
        establishment=who.establishment,
        request_id=meta.request_id if meta else None,
        consultation_id=consultation_id,
        detail=detail,
    )


def allow(
    *,
    session: Session,
    who: Who,
    meta: RequestMeta | None,
    action: str,
    outcome: str = "allowed",
    authority_jti: str | None = None,
    patient_id: str | None = None,
    document_ids: Iterable[str] = (),
    consultation_id: str | None = None,
    purpose_of_use: str | None = None,
    description: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Record an allowed action in the caller's transaction (it commits with the action)."""
    return append_entry(
        session=session,
        event=_event(
            who=who,
            meta=meta,
            action=action,
            outcome=outcome,
            authority_jti=authority_jti,
            patient_id=patient_id,
            document_ids=document_ids,
            consultation_id=consultation_id,
            purpose_of_use=purpose_of_use,
            description=description,
            detail=detail,
        ),
    )


def refuse(
    error: RecordsError,
    *,
    session: Session,
    who: Who,
    meta: RequestMeta | None,
    action: str,
    authority_jti: str | None = None,
    patient_id: str | None = None,
    document_ids: Iterable[str] = (),
    consultation_id: str | None = None,
    purpose_of_use: str | None = None,
    detail: Mapping[str, Any] | None = None,
    outcome: str = "denied",
) -> NoReturn:
    """Record a denial with the refusal's code, commit it, and raise ``error``.

    ``patient_id``/``document_ids`` name what was asked for, even when it does not exist:
    the log says what the caller tried, the caller is told nothing more than the error.
    """
    session.rollback()
    append_entry(
        session=session,
        event=_event(
            who=who,
            meta=meta,
            action=action,
            outcome=outcome,
            authority_jti=authority_jti,
            patient_id=patient_id,
            document_ids=document_ids,
            consultation_id=consultation_id,
            purpose_of_use=purpose_of_use,
            description=None,
            detail={**(detail or {}), "reason": error.code},
        ),
    )
    session.commit()
    raise error
