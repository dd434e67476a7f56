"""Reviewing record access outside a consultation: break-glass accesses and everything else.

Break-glass accesses are the records library's review queue (``records.breakglass``): the
console's two decisions map onto its two outcomes — **reviewed** (the emergency access was
justified) is ``approved``, **escalated** (it needs looking into, comment required) is
``rejected`` — and ``review_break_glass`` records its own ``breakglass.review`` entry.

Any other record access with no consultation (``GET /api/v1/audit/outside-consultation``)
is signed off here, one audit entry at a time, in ``admin_access_sign_offs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from records.audit.chain import AuditEntry
from records.audit.query import RECORD_READ_CATEGORIES, AuditQuery, query_entries
from records.breakglass import list_break_glass, review_break_glass
from records.models import BreakGlassAccess
from records.ports import Actor, RequestMeta
from server.admin.audit_search import get_entry
from server.admin.errors import AlreadySignedOff
from server.admin.models import AccessSignOff
from server.errors import NotFound, ValidationFailed

Decision = Literal["reviewed", "escalated"]
BreakGlassStatus = Literal["pending", "approved", "rejected"]
TO_RECORDS: dict[Decision, Literal["approved", "rejected"]] = {
    "reviewed": "approved",
    "escalated": "rejected",
}
FROM_RECORDS: dict[str, Decision] = {"approved": "reviewed", "rejected": "escalated"}
MAX_COMMENT = 2000


def check_comment(decision: Decision, comment: str) -> str:
    """The comment, trimmed; an escalation must say why."""
    text = comment.strip()
    if decision == "escalated" and not text:
        raise ValidationFailed("Say why you are escalating this access")
    if len(text) > MAX_COMMENT:
        raise ValidationFailed(f"Keep the comment under {MAX_COMMENT} characters")
    return text


@dataclass(frozen=True)
class BreakGlassItem:
    """A break-glass access and the record reads made under its grant."""

    access: BreakGlassAccess
    reads: list[AuditEntry]


def break_glass_items(
    *, session: Session, status: BreakGlassStatus | None, limit: int = 100
) -> list[BreakGlassItem]:
    """Break-glass accesses (pending: oldest first), each with what was opened under it."""
    items: list[BreakGlassItem] = []
    for access in list_break_glass(session=session, status=status, limit=limit):
        reads = query_entries(
            session=session,
            query=AuditQuery(
                authority_jti=access.grant_jti, categories=RECORD_READ_CATEGORIES, sort="seq", limit=50
            ),
        ).entries
        items.append(BreakGlassItem(access=access, reads=reads))
    return items


def sign_off_break_glass(
    *,
    session: Session,
    reviewer: Actor,
    access_id: str,
    decision: Decision,
    comment: str,
    meta: RequestMeta,
    now: datetime,
) -> BreakGlassAccess:
    """Sign off a pending break-glass access (reviewed or escalated); audited by records."""
    text = check_comment(decision, comment)
    return review_break_glass(
        session=session,
        reviewer=reviewer,
        access_id=access_id,
        outcome=TO_RECORDS[decision],
        note=text or "Reviewed: the emergency access was justified.",
        meta=meta,
        now=now,
    )


def outside_consultation_page(
    *, session: Session, cursor: str | None, limit: int = 50
) -> tuple[list[AuditEntry], str | None]:
    """Record reads and writes made outside any consultation, newest first (the records query)."""
    found = query_entries(
        session=session,
        query=AuditQuery(
            outside_consultation=True,
            categories=RECORD_READ_CATEGORIES,
            sort="-ts",
            limit=limit,
            cursor=cursor,
        ),
    )
    return found.entries, found.next_cursor


def sign_offs_for(*, session: Session, seqs: Sequence[int]) -> dict[int, AccessSignOff]:
    """The sign-offs of these entries, by sequence number."""
    if not seqs:
        return {}
    rows = session.exec(select(AccessSignOff).where(col(AccessSignOff.entry_seq).in_(list(seqs))))
    return {row.entry_seq: row for row in rows}


def break_glass_jtis(*, session: Session, jtis: Sequence[str]) -> dict[str, str]:
    """Grant jti → break-glass access id, for the entries made under a break-glass grant."""
    if not jtis:
        return {}
    rows = session.exec(
        select(BreakGlassAccess.grant_jti, BreakGlassAccess.id).where(
            col(BreakGlassAccess.grant_jti).in_(list(jtis))
        )
    )
    return dict(rows.all())


def sign_off_entry(
    *, session: Session, seq: int, reviewer_id: str, decision: Decision, comment: str, now: datetime
) -> tuple[AccessSignOff, AuditEntry]:
    """Sign off one record access made outside a consultation (once)."""
    text = check_comment(decision, comment)
    entry = get_entry(session=session, seq=seq)
    reads = RECORD_READ_CATEGORIES
    if entry is None or entry.consultation_id is not None or entry.action.split(".", 1)[0] not in reads:
        raise NotFound("No record access outside a consultation has that number")
    if session.get(AccessSignOff, seq) is not None:
        raise AlreadySignedOff(f"Entry {seq} has already been signed off")
    row = AccessSignOff(
        entry_seq=seq, decision=decision, comment=text, reviewer_id=reviewer_id, reviewed_at=now
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # Another admin signed it off a moment ago.
        session.rollback()
        raise AlreadySignedOff(f"Entry {seq} has already been signed off") from None
    return row, entry
