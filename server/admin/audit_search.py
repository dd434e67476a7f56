"""The console's audit search: what an admin types, turned into the records library's query.

The searching, sorting and keyset paging are ``records.audit.query`` (the same service behind
``GET /api/v1/audit/entries``); the FHIR export is ``records.audit.fhir``. This module only
resolves what people type (a prison number, a username, calendar days) into ids and times,
adds the names a person reads (usernames, prison numbers) to each row, and writes CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlmodel import Session, col, or_, select

from records.audit.chain import AuditEntry
from records.audit.log import iter_entries
from records.audit.query import ACCESS_CATEGORIES, RECORD_READ_CATEGORIES, AuditQuery, query_entries
from records.models import Patient
from server.admin.errors import ExportTooLarge, UnknownPatient, UnknownUser
from server.errors import ValidationFailed
from server.identity.models import User

Scope = Literal["entries", "patient_accesses", "outside_consultation"]
Outcome = Literal["allowed", "denied", "success", "failure"]
EXPORT_LIMIT = 10_000
PAGE_LIMIT = 500


@dataclass(frozen=True)
class Search:
    """A search as the console's form states it (all optional; all given must match)."""

    patient: str | None = None
    user: str | None = None
    device: str | None = None
    action: str | None = None
    outcome: Outcome | None = None
    consultation: str | None = None
    authority: str | None = None
    day_from: date | None = None
    day_to: date | None = None
    scope: Scope = "entries"

    def filters(self) -> dict[str, str]:
        """The filters given, as text (for the audit entry of the search)."""
        values = {
            "patient": self.patient,
            "user": self.user,
            "device": self.device,
            "action": self.action,
            "outcome": self.outcome,
            "consultation": self.consultation,
            "authority": self.authority,
            "from": self.day_from.isoformat() if self.day_from else None,
            "to": self.day_to.isoformat() if self.day_to else None,
        }
        return {k: v for k, v in values.items() if v}


def find_patient_id(*, session: Session, text: str) -> str:
    """A patient's id from their prison number (any case) or their id."""
    wanted = text.strip()
    patient = session.exec(
        select(Patient).where(
            or_(col(Patient.prison_number) == wanted.upper(), col(Patient.prison_number) == wanted)
        )
    ).first() or session.get(Patient, wanted)
    if patient is None:
        raise UnknownPatient("No patient has that prison number or id")
    return patient.id


def find_user_id(*, session: Session, text: str) -> str:
    """A user's id from their username or their id; an id the log names but no account has is kept."""
    wanted = text.strip()
    user = session.exec(select(User).where(User.username == wanted.lower())).first() or session.get(
        User, wanted
    )
    if user is not None:
        return user.id
    # Devices and services act too (actor ids like "laptop-01" or "cli:ops"): search for the text.
    if wanted and " " not in wanted:
        return wanted
    raise UnknownUser("No user has that username")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def to_query(*, session: Session, search: Search, cursor: str | None = None, limit: int = 50) -> AuditQuery:
    """The records query for a console search (``day_to`` is inclusive)."""
    if search.day_from and search.day_to and search.day_to < search.day_from:
        raise ValidationFailed("The end date is before the start date")
    patient_id = find_patient_id(session=session, text=search.patient) if search.patient else None
    categories: tuple[str, ...] = ()
    if search.scope == "patient_accesses":
        if patient_id is None:
            raise ValidationFailed("Say which patient")
        categories = ACCESS_CATEGORIES
    elif search.scope == "outside_consultation":
        categories = RECORD_READ_CATEGORIES
    return AuditQuery(
        patient_id=patient_id,
        actor_id=find_user_id(session=session, text=search.user) if search.user else None,
        device_id=search.device.strip() if search.device else None,
        consultation_id=search.consultation.strip() if search.consultation else None,
        authority_jti=search.authority.strip() if search.authority else None,
        action=search.action.strip().lower() if search.action else None,
        categories=categories,
        outcomes=(search.outcome,) if search.outcome else (),
        outside_consultation=search.scope == "outside_consultation",
        since=_day_start(search.day_from) if search.day_from else None,
        until=_day_start(search.day_to) + timedelta(days=1) if search.day_to else None,
        sort="-ts",
        limit=limit,
        cursor=cursor,
    )


@dataclass
class Names:
    """Usernames and prison numbers for the ids a set of entries mentions."""

    users: dict[str, User] = field(default_factory=dict)
    prison_numbers: dict[str, str] = field(default_factory=dict)

    def user_label(self, actor_id: str | None) -> str | None:
        """``display name (username)`` for a user id, or None for a device or unknown actor."""
        user = self.users.get(actor_id or "")
        return f"{user.display_name} ({user.username})" if user else None


def prison_numbers(*, session: Session, patient_ids: Iterable[str]) -> dict[str, str]:
    """Patient id → prison number, for the ids given."""
    wanted = set(patient_ids)
    if not wanted:
        return {}
    rows = session.exec(select(Patient.id, Patient.prison_number).where(col(Patient.id).in_(wanted)))
    return dict(rows.all())


def names_for(*, session: Session, entries: Sequence[AuditEntry]) -> Names:
    """Look up, in two queries, who and which patient the entries name."""
    actor_ids = {e.actor_id for e in entries if e.actor_id}
    patient_ids = {e.patient_id for e in entries if e.patient_id}
    names = Names()
    if actor_ids:
        names.users = {u.id: u for u in session.exec(select(User).where(col(User.id).in_(actor_ids)))}
    names.prison_numbers = prison_numbers(session=session, patient_ids=patient_ids)
    return names


def page(*, session: Session, query: AuditQuery) -> tuple[list[AuditEntry], str | None, Names]:
    """One page of the search, newest first, with the names its rows need."""
    found = query_entries(session=session, query=query)
    return found.entries, found.next_cursor, names_for(session=session, entries=found.entries)


def get_entry(*, session: Session, seq: int) -> AuditEntry | None:
    """One entry by its sequence number."""
    return next(iter(iter_entries(session=session, from_seq=seq, to_seq=seq, batch=1)), None)


def all_matching(*, session: Session, query: AuditQuery, cap: int | None = None) -> list[AuditEntry]:
    """Every entry of the search (all pages), refusing more than ``cap`` (default EXPORT_LIMIT)."""
    cap = EXPORT_LIMIT if cap is None else cap
    entries: list[AuditEntry] = []
    current = query.model_copy(update={"limit": PAGE_LIMIT, "cursor": None})
    while True:
        found = query_entries(session=session, query=current)
        entries.extend(found.entries)
        if len(entries) > cap:
            raise ExportTooLarge(f"More than {cap} entries match; narrow the search (dates, user, patient)")
        if found.next_cursor is None:
            return entries
        current = current.model_copy(update={"cursor": found.next_cursor})


CSV_COLUMNS = (
    "seq",
    "ts",
    "action",
    "outcome",
    "actor_id",
    "actor_role",
    "actor_name",
    "patient_id",
    "prison_number",
    "consultation_id",
    "purpose_of_use",
    "device_id",
    "ip",
    "establishment",
    "authority_jti",
    "request_id",
    "document_ids",
    "description",
    "reason",
    "entry_hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet would run a cell starting like a formula: make it plain text.
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_rows(entries: Iterable[AuditEntry], names: Names) -> Iterable[list[str]]:
    """One CSV row per entry, in ``CSV_COLUMNS`` order."""
    for e in entries:
        reason = e.detail.get("reason")
        values: list[Any] = [
            e.seq,
            e.ts,
            e.action,
            e.outcome,
            e.actor_id,
            e.actor_role,
            names.user_label(e.actor_id),
            e.patient_id,
            names.prison_numbers.get(e.patient_id or ""),
            e.consultation_id,
            e.purpose_of_use,
            e.device_id,
            e.ip,
            e.establishment,
            e.authority_jti,
            e.request_id,
            " ".join(e.data.document_ids),
            e.data.description,
            reason if isinstance(reason, str) else None,
            e.entry_hash,
        ]
        yield [_cell(v) for v in values]


def to_csv(entries: Sequence[AuditEntry], names: Names) -> str:
    """The entries as CSV (RFC 4180, header row, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(entries, names))
    return out.getvalue()
