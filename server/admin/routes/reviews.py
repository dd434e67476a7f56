"""The review queue: break-glass accesses, other record accesses outside a consultation, sign-offs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from server.admin import audit_search, reviews
from server.admin.deps import AdminDep
from server.admin.events import record_admin
from server.admin.models import AccessSignOff
from server.admin.routes.common import audit_row
from server.admin.routes.headers import AdminRoute
from server.admin.schemas import BreakGlassOut, OutsidePageOut, OutsideRow, SignOffOut, SignOffRequest
from server.db import utcnow
from server.deps import SessionDep
from server.identity.models import User

router = APIRouter(prefix="/admin/api", tags=["admin"], route_class=AdminRoute)


def _user_names(session: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = session.exec(select(User).where(col(User.id).in_(ids)))
    return {u.id: f"{u.display_name} ({u.username})" for u in rows}


def _break_glass_out(session: Session, items: list[reviews.BreakGlassItem]) -> list[BreakGlassOut]:
    reads = [r for item in items for r in item.reads]
    names = audit_search.names_for(session=session, entries=reads)
    people = _user_names(
        session, {i.access.user_id for i in items} | {i.access.reviewed_by or "" for i in items}
    )
    numbers = audit_search.prison_numbers(session=session, patient_ids={i.access.patient_id for i in items})
    out: list[BreakGlassOut] = []
    for item in items:
        a = item.access
        out.append(
            BreakGlassOut(
                id=a.id,
                user_id=a.user_id,
                user_name=people.get(a.user_id),
                patient_id=a.patient_id,
                prison_number=numbers.get(a.patient_id),
                device_id=a.device_id,
                reason=a.reason,
                opened_at=a.opened_at,
                expires_at=a.expires_at,
                status=a.status,
                decision=reviews.FROM_RECORDS.get(a.status),
                reviewed_by=people.get(a.reviewed_by or "", a.reviewed_by),
                reviewed_at=a.reviewed_at,
                review_note=a.review_note,
                reads=[audit_row(e, names) for e in item.reads],
            )
        )
    return out


@router.get("/break-glass", response_model=list[BreakGlassOut])
def break_glass(
    admin: AdminDep,
    session: SessionDep,
    status: Annotated[Literal["pending", "approved", "rejected"] | None, Query()] = "pending",
) -> list[BreakGlassOut]:
    """Break-glass accesses (default: waiting for review, oldest first), with the reason and what was read."""
    items = reviews.break_glass_items(session=session, status=status)
    record_admin(
        session=session,
        action="audit.query",
        outcome="allowed",
        who=admin.who,
        where=admin.where,
        detail={
            "via": "admin_console",
            "query": "break_glass",
            "status": status or "any",
            "returned": len(items),
        },
    )
    return _break_glass_out(session, items)


@router.post("/break-glass/{access_id}/sign-off", response_model=BreakGlassOut)
def sign_off_break_glass(
    access_id: str, body: SignOffRequest, admin: AdminDep, session: SessionDep
) -> BreakGlassOut:
    """Sign off a break-glass access: reviewed (justified) or escalated (a comment says why)."""
    access = reviews.sign_off_break_glass(
        session=session,
        reviewer=admin.actor,
        access_id=access_id,
        decision=body.decision,
        comment=body.comment,
        meta=admin.meta,
        now=utcnow(),
    )
    record_admin(
        session=session,
        action="admin.breakglass.sign_off",
        outcome="success",
        who=admin.who,
        where=admin.where,
        patient_id=access.patient_id,
        authority_jti=access.grant_jti,
        detail={"access_id": access.id, "decision": body.decision, "clinician": access.user_id},
    )
    item = reviews.BreakGlassItem(access=access, reads=[])
    return _break_glass_out(session, [item])[0]


def _sign_off_out(row: AccessSignOff, names: dict[str, str]) -> SignOffOut:
    return SignOffOut(
        decision=row.decision,
        comment=row.comment,
        reviewer_id=row.reviewer_id,
        reviewer_name=names.get(row.reviewer_id),
        reviewed_at=row.reviewed_at,
    )


@router.get("/outside-consultation", response_model=OutsidePageOut)
def outside_consultation(
    admin: AdminDep,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 25,
) -> OutsidePageOut:
    """Record reads and writes with no consultation, newest first, each with its sign-off (if any)."""
    entries, next_cursor = reviews.outside_consultation_page(session=session, cursor=cursor, limit=limit)
    names = audit_search.names_for(session=session, entries=entries)
    sign_offs = reviews.sign_offs_for(session=session, seqs=[e.seq for e in entries])
    reviewers = _user_names(session, {s.reviewer_id for s in sign_offs.values()})
    glass = reviews.break_glass_jtis(
        session=session, jtis=[e.authority_jti for e in entries if e.authority_jti]
    )
    record_admin(
        session=session,
        action="audit.query",
        outcome="allowed",
        who=admin.who,
        where=admin.where,
        detail={"via": "admin_console", "query": "outside_consultation", "returned": len(entries)},
    )
    rows = [
        OutsideRow(
            entry=audit_row(e, names),
            break_glass_id=glass.get(e.authority_jti or ""),
            sign_off=_sign_off_out(sign_offs[e.seq], reviewers) if e.seq in sign_offs else None,
        )
        for e in entries
    ]
    return OutsidePageOut(entries=rows, next_cursor=next_cursor)


@router.post("/outside-consultation/{seq}/sign-off", response_model=SignOffOut)
def sign_off_entry(seq: int, body: SignOffRequest, admin: AdminDep, session: SessionDep) -> SignOffOut:
    """Sign off one record access made outside a consultation (once): reviewed, or escalated."""
    row, entry = reviews.sign_off_entry(
        session=session,
        seq=seq,
        reviewer_id=admin.user.id,
        decision=body.decision,
        comment=body.comment,
        now=utcnow(),
    )
    record_admin(
        session=session,
        action="admin.access.sign_off",
        outcome="success",
        who=admin.who,
        where=admin.where,
        patient_id=entry.patient_id,
        detail={"entry_seq": seq, "decision": body.decision},
    )
    return _sign_off_out(row, _user_names(session, {row.reviewer_id}))
