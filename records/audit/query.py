"""Reading the audit log for admins: filter, sort, page (keyset cursors), preset questions.

Pages are keyset-paginated on ``(ts, seq)`` so a page never skips or repeats an entry
while new entries are being appended. The cursor is opaque to callers.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, and_, or_, select
from sqlmodel import Session

from records.audit.chain import AuditEntry, format_ts
from records.audit.log import entry_from_row
from records.models import AuditEntryRow
from records.service_errors import InvalidCursor

__all__ = [
    "ACCESS_CATEGORIES",
    "RECORD_READ_CATEGORIES",
    "AuditPage",
    "AuditQuery",
    "Sort",
    "query_entries",
]

_ENTRIES = AuditEntryRow.__table__  # type: ignore[attr-defined]

Sort = Literal["ts", "-ts", "seq", "-seq"]
ACCESS_CATEGORIES = ("document", "note", "patient", "grant", "breakglass", "share")
"""Actions that touch a patient's record or the authority to touch it."""
RECORD_READ_CATEGORIES = ("document", "note", "patient")
"""Actions that read or write record content."""
MAX_LIMIT = 500


class AuditQuery(BaseModel):
    """Filters for the audit log; all given filters must match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: str | None = None
    actor_id: str | None = None
    device_id: str | None = None
    consultation_id: str | None = None
    authority_jti: str | None = None
    action: str | None = None
    categories: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    purpose_of_use: str | None = None
    outside_consultation: bool = False
    since: datetime | None = None
    until: datetime | None = None
    sort: Sort = "-ts"
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    cursor: str | None = None


@dataclass(frozen=True)
class AuditPage:
    """One page of entries and the cursor for the next (None on the last page)."""

    entries: list[AuditEntry]
    next_cursor: str | None


#: sequence numbers stay within what JSON and every database can hold (records.audit.chain)
_MAX_SEQ = 2**53 - 1


def _encode_cursor(sort: Sort, ts: str, seq: int) -> str:
    raw = json.dumps({"s": sort, "t": ts, "q": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: Sort) -> tuple[str, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts, seq, kind = raw["t"], raw["q"], raw["s"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidCursor("The cursor is not one this server handed out") from None
    if kind != sort or not isinstance(ts, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise InvalidCursor("The cursor belongs to another sort order; restart without it")
    if not 0 <= seq <= _MAX_SEQ:
        raise InvalidCursor("The cursor is not one this server handed out")
    return ts, seq


def _filters(query: AuditQuery) -> list[ColumnElement[bool]]:
    c = _ENTRIES.c
    where: list[ColumnElement[bool]] = []
    exact = {
        "patient_id": query.patient_id,
        "actor_id": query.actor_id,
        "device_id": query.device_id,
        "consultation_id": query.consultation_id,
        "authority_jti": query.authority_jti,
        "action": query.action,
        "purpose_of_use": query.purpose_of_use,
    }
    for name, value in exact.items():
        if value is not None:
            where.append(c[name] == value)
    if query.categories:
        where.append(or_(*(c.action.like(f"{category}.%") for category in query.categories)))
    if query.outcomes:
        where.append(c.outcome.in_(query.outcomes))
    if query.outside_consultation:
        where.append(c.consultation_id.is_(None))
    if query.since is not None:
        where.append(c.ts >= format_ts(query.since))
    if query.until is not None:
        where.append(c.ts < format_ts(query.until))
    return where


def _keyset(sort: Sort, ts: str, seq: int) -> ColumnElement[bool]:
    c = _ENTRIES.c
    if sort == "seq":
        after: ColumnElement[bool] = c.seq > seq
        return after
    if sort == "-seq":
        before: ColumnElement[bool] = c.seq < seq
        return before
    if sort == "ts":
        return or_(c.ts > ts, and_(c.ts == ts, c.seq > seq))
    return or_(c.ts < ts, and_(c.ts == ts, c.seq < seq))


def _order(sort: Sort) -> list[Any]:
    c = _ENTRIES.c
    return {
        "seq": [c.seq.asc()],
        "-seq": [c.seq.desc()],
        "ts": [c.ts.asc(), c.seq.asc()],
        "-ts": [c.ts.desc(), c.seq.desc()],
    }[sort]


def query_entries(*, session: Session, query: AuditQuery) -> AuditPage:
    """One page of entries matching ``query``, in its sort order."""
    where = _filters(query)
    if query.cursor:
        ts, seq = _decode_cursor(query.cursor, query.sort)
        where.append(_keyset(query.sort, ts, seq))
    stmt = select(_ENTRIES).where(*where).order_by(*_order(query.sort)).limit(query.limit + 1)
    rows = session.connection().execute(stmt).all()
    more = len(rows) > query.limit
    entries = [entry_from_row(row) for row in rows[: query.limit]]
    cursor = None
    if more and entries:
        last = entries[-1]
        cursor = _encode_cursor(query.sort, last.ts, last.seq)
    return AuditPage(entries=entries, next_cursor=cursor)
