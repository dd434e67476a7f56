"""Break-glass: emergency read access outside any consultation, justified and reviewed.

A clinician on a compliant prison laptop states a reason (at least ``MIN_REASON_CHARS``
characters) and receives a short read-only grant (15 minutes, purpose ``ETREAT``). The
access is flagged ``pending`` for admin review; an admin signs it off as ``approved`` or
``rejected`` with a note. Every step is an audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlmodel import Session, col, select

from records.decisions import Who, allow, refuse
from records.errors import BreakGlassReasonRequired, NotFoundOrDenied
from records.grants import BREAK_GLASS_SCOPE, IssuedGrant, posture_who, require_posture, sign_grant
from records.models import BreakGlassAccess, Patient
from records.ports import Actor, PostureCheck, RequestMeta, TokenSigner
from records.service_errors import ReviewClosed

__all__ = [
    "BREAK_GLASS_TTL",
    "MIN_REASON_CHARS",
    "BreakGlassOpened",
    "list_break_glass",
    "open_break_glass",
    "review_break_glass",
]

BREAK_GLASS_TTL = timedelta(minutes=15)
MIN_REASON_CHARS = 20
MAX_REASON_CHARS = 2000
CLINICIAN = "clinician"
PENDING = "pending"
ReviewOutcome = Literal["approved", "rejected"]


@dataclass(frozen=True)
class BreakGlassOpened:
    """The emergency grant and the access record awaiting review."""

    grant: IssuedGrant
    access: BreakGlassAccess


def open_break_glass(
    *,
    session: Session,
    signer: TokenSigner,
    actor: Actor,
    posture: PostureCheck,
    patient_id: str,
    reason: str,
    meta: RequestMeta | None = None,
    now: datetime | None = None,
) -> BreakGlassOpened:
    """Open emergency access to one patient: a 15-minute ETREAT grant, flagged for review."""
    now = now or datetime.now(UTC)
    action = "breakglass.open"
    ids: dict[str, Any] = {"patient_id": patient_id[:64], "purpose_of_use": "ETREAT"}
    device = require_posture(posture, session=session, actor=actor, meta=meta, action=action, **ids)
    who = posture_who(actor, device)
    text = reason.strip()
    if not MIN_REASON_CHARS <= len(text) <= MAX_REASON_CHARS:
        refuse(
            BreakGlassReasonRequired(
                f"State the clinical reason in {MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters"
            ),
            session=session,
            who=who,
            meta=meta,
            action=action,
            detail={"reason_chars": len(text)},
            **ids,
        )
    patient = session.get(Patient, patient_id)
    if patient is None or actor.role != CLINICIAN:
        # Who may not break the glass and which patients exist are answered the same way.
        refuse(NotFoundOrDenied(), session=session, who=who, meta=meta, action=action, **ids)
    grant = sign_grant(
        session=session,
        signer=signer,
        actor=actor,
        posture=device,
        patient_id=patient.id,
        consultation_id=None,
        expires_at=now + BREAK_GLASS_TTL,
        now=now,
        kind="break_glass",
        scope=BREAK_GLASS_SCOPE,
        purpose="ETREAT",
    )
    access = BreakGlassAccess(
        user_id=actor.user_id,
        patient_id=patient.id,
        device_id=device.device_id,
        grant_jti=grant.claims.jti,
        reason=text,
        opened_at=now,
        expires_at=grant.claims.expires_at,
    )
    session.add(access)
    session.flush()
    allow(
        session=session,
        who=who,
        meta=meta,
        action=action,
        authority_jti=grant.claims.jti,
        detail={"access_id": access.id, "review": PENDING, "exp": grant.claims.exp},
        **ids,
    )
    return BreakGlassOpened(grant=grant, access=access)


def list_break_glass(
    *, session: Session, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[BreakGlassAccess]:
    """Break-glass accesses, oldest pending first when filtering by status, else newest first."""
    query = select(BreakGlassAccess)
    if status is not None:
        query = query.where(BreakGlassAccess.status == status).order_by(
            col(BreakGlassAccess.opened_at), col(BreakGlassAccess.id)
        )
    else:
        query = query.order_by(col(BreakGlassAccess.opened_at).desc(), col(BreakGlassAccess.id))
    return list(session.exec(query.offset(offset).limit(limit)).all())


def review_break_glass(
    *,
    session: Session,
    reviewer: Actor,
    access_id: str,
    outcome: ReviewOutcome,
    note: str,
    meta: RequestMeta | None = None,
    now: datetime | None = None,
) -> BreakGlassAccess:
    """Sign off a pending break-glass access as approved or rejected, with a note."""
    who = Who(actor_id=reviewer.user_id, actor_role=reviewer.role, establishment=reviewer.establishment)
    access = session.get(BreakGlassAccess, access_id)
    if access is None:
        refuse(
            NotFoundOrDenied(),
            session=session,
            who=who,
            meta=meta,
            action="breakglass.review",
            detail={"access_id": access_id[:64]},
        )
    ids: dict[str, Any] = {
        "authority_jti": access.grant_jti,
        "patient_id": access.patient_id,
        "detail": {"access_id": access.id, "outcome": outcome},
    }
    if access.status != PENDING:
        refuse(
            ReviewClosed(f'Cannot review a break-glass access in state "{access.status}"'),
            session=session,
            who=who,
            meta=meta,
            action="breakglass.review",
            **ids,
        )
    access.status = outcome
    access.reviewed_by = reviewer.user_id
    access.reviewed_at = now or datetime.now(UTC)
    access.review_note = note.strip()[:MAX_REASON_CHARS]
    session.add(access)
    session.flush()
    allow(session=session, who=who, meta=meta, action="breakglass.review", outcome="success", **ids)
    return access
