"""The audit log in the database: append under a lock, sign checkpoints, read back.

Appends are serialised on the single ``audit_head`` row: ``UPDATE audit_head SET seq = seq
+ 1 … RETURNING`` takes the row lock on PostgreSQL (a second writer waits until the first
commits, then sees its update) and the write lock on SQLite (BEGIN IMMEDIATE semantics).
The sequence number is therefore assigned inside the locked transaction: a rolled-back
transaction rolls back its head update too and leaves no gap, and two writers can never
get the same seq. The head also carries the Merkle frontier, so a checkpoint is O(log n).

Nothing here updates or deletes an entry; on PostgreSQL a trigger (migration 0004)
refuses UPDATE and DELETE on ``audit_entries`` and ``audit_checkpoints`` as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from records.audit.chain import (
    GENESIS_HASH,
    AuditData,
    AuditEntry,
    AuditFields,
    canonical_json,
    chain_entry,
    utc_now_ts,
)
from records.audit.checkpoint import Checkpoint, sign_checkpoint
from records.audit.merkle import MerkleAccumulator, consistency_proof
from records.errors import RecordsError
from records.models import AuditCheckpointRow, AuditEntryRow, AuditHead

__all__ = [
    "AuditLogCorrupt",
    "AuditLogInconsistent",
    "AuditRangeInvalid",
    "EventFields",
    "append_entry",
    "consistency",
    "create_checkpoint",
    "entry_from_row",
    "head",
    "iter_checkpoints",
    "iter_entries",
    "latest_checkpoint",
]

log = logging.getLogger("telemed.audit")

HEAD_ID = 1
_ENTRIES = AuditEntryRow.__table__  # type: ignore[attr-defined]
_HEAD = AuditHead.__table__  # type: ignore[attr-defined]
_CHECKPOINTS = AuditCheckpointRow.__table__  # type: ignore[attr-defined]


class AuditLogCorrupt(RecordsError):
    """The log's head does not match its entries: refuse to append or sign until resolved."""

    code = "audit_log_corrupt"
    status = 500
    title = "The audit log is inconsistent"


class AuditRangeInvalid(RecordsError):
    """A consistency proof was asked for tree sizes the log does not have."""

    code = "audit_range_invalid"
    status = 422
    title = "No such range of the audit log"


class AuditLogInconsistent(RecordsError):
    """The stored entries do not reach the head: a proof over them would prove nothing."""

    code = "audit_log_inconsistent"
    status = 409
    title = "The audit log's entries do not match its head"


@dataclass(frozen=True)
class EventFields:
    """One event to append; ``seq``, ``ts`` and the hashes are assigned by the log."""

    action: str
    outcome: str
    actor_id: str | None = None
    actor_role: str | None = None
    authority_jti: str | None = None
    patient_id: str | None = None
    document_ids: tuple[str, ...] = ()
    description: str | None = None
    purpose_of_use: str | None = None
    device_id: str | None = None
    ip: str | None = None
    establishment: str | None = None
    request_id: str | None = None
    consultation_id: str | None = None
    detail: Mapping[str, Any] | None = None

    def values(self) -> dict[str, Any]:
        """The entry fields this event contributes (no seq/ts/hashes)."""
        data: dict[str, Any] = {"document_ids": list(self.document_ids)}
        if self.description is not None:
            data["description"] = self.description
        return {
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "authority_jti": self.authority_jti,
            "patient_id": self.patient_id,
            "data": data,
            "action": self.action,
            "outcome": self.outcome,
            "purpose_of_use": self.purpose_of_use,
            "device_id": self.device_id,
            "ip": self.ip,
            "establishment": self.establishment,
            "request_id": self.request_id,
            "consultation_id": self.consultation_id,
            "detail": dict(self.detail or {}),
        }


@dataclass(frozen=True)
class Head:
    """Where the log stands: last seq, its hash, and the Merkle frontier."""

    seq: int
    entry_hash: str
    frontier: list[str]

    def root(self) -> str:
        """Merkle tree head over entries 1..seq."""
        return MerkleAccumulator.resume(self.seq, self.frontier).root()


def _connection(session: Session) -> Connection:
    return session.connection()


def _insert_ignore(conn: Connection, table: Any, values: Mapping[str, Any], key: str) -> int:
    """INSERT … ON CONFLICT DO NOTHING on both databases; returns rows inserted."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
    else:  # pragma: no cover - only the two supported databases
        stmt = insert(table).values(**values)
    # Count the rows RETURNING hands back: the driver's rowcount is not reliable here
    # (psycopg reports -1 for INSERT … ON CONFLICT DO NOTHING through SQLAlchemy).
    return len(conn.execute(stmt.returning(table.c[key])).all())


def _ensure_head_row(conn: Connection) -> None:
    # The migration inserts the head; it can only be missing on a wiped (test) database.
    # Create it first and look at the entries after: a concurrent writer that created it
    # a moment ago makes our insert a no-op (it waits for that writer's commit), and we
    # simply take the row it made. Only the writer whose insert took effect holds the new
    # row, and an empty head over existing entries would fork the chain, so that is refused.
    inserted = _insert_ignore(
        conn,
        _HEAD,
        {"id": HEAD_ID, "seq": 0, "entry_hash": GENESIS_HASH, "frontier": "[]"},
        "id",
    )
    if not inserted:
        return
    existing = conn.execute(select(func.count()).select_from(_ENTRIES)).scalar_one()
    if existing:
        raise AuditLogCorrupt(f"The audit head row is missing while {existing} entries exist")


def _lock_and_advance(conn: Connection) -> tuple[int, str, list[str]]:
    """Advance the head's seq under its row lock; return (new seq, previous hash, frontier)."""
    stmt = (
        update(_HEAD)
        .where(_HEAD.c.id == HEAD_ID)
        .values(seq=_HEAD.c.seq + 1)
        .returning(_HEAD.c.seq, _HEAD.c.entry_hash, _HEAD.c.frontier)
    )
    row = conn.execute(stmt).first()
    if row is None:
        _ensure_head_row(conn)
        row = conn.execute(stmt).first()
        if row is None:  # pragma: no cover - the row was just inserted
            raise AuditLogCorrupt("The audit head row cannot be created")
    return int(row.seq), str(row.entry_hash), list(json.loads(row.frontier))


def _row_values(entry: AuditEntry) -> dict[str, Any]:
    data = entry.data.model_dump(mode="json")
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "actor_id": entry.actor_id,
        "actor_role": entry.actor_role,
        "authority_jti": entry.authority_jti,
        "patient_id": entry.patient_id,
        "data": canonical_json({k: v for k, v in data.items() if v is not None}).decode("utf-8"),
        "action": entry.action,
        "outcome": entry.outcome,
        "purpose_of_use": entry.purpose_of_use,
        "device_id": entry.device_id,
        "ip": entry.ip,
        "establishment": entry.establishment,
        "request_id": entry.request_id,
        "consultation_id": entry.consultation_id,
        "detail": canonical_json(entry.detail).decode("utf-8"),
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def append_entry(*, session: Session, event: EventFields) -> AuditEntry:
    """Append one event to the chain inside the session's transaction; returns the linked entry.

    The entry becomes visible (and its seq final) when the caller commits; if the caller
    rolls back, the entry and the head update vanish together. The head row stays locked
    until then, so append last in a transaction (after its other writes): every auditing
    transaction queues on that lock, and taking it early invites lock-order deadlocks.
    """
    # Validate before taking the lock, so a bad event never holds up other writers.
    values = event.values()
    AuditFields.model_validate({**values, "seq": 1, "ts": utc_now_ts()})
    conn = _connection(session)
    seq, prev_hash, frontier = _lock_and_advance(conn)
    # The timestamp is taken under the lock, so ts order follows seq order.
    entry = chain_entry(prev_hash, {**values, "seq": seq, "ts": utc_now_ts()})
    acc = MerkleAccumulator.resume(seq - 1, frontier)
    acc.append(entry.entry_hash)
    conn.execute(
        update(_HEAD)
        .where(_HEAD.c.id == HEAD_ID)
        .values(entry_hash=entry.entry_hash, frontier=json.dumps(acc.frontier()))
    )
    conn.execute(insert(_ENTRIES).values(**_row_values(entry)))
    return entry


def head(*, session: Session) -> Head:
    """The committed head of the log (seq 0 and the genesis hash when empty)."""
    row = _connection(session).execute(select(_HEAD).where(_HEAD.c.id == HEAD_ID)).first()
    if row is None:
        return Head(seq=0, entry_hash=GENESIS_HASH, frontier=[])
    return Head(seq=int(row.seq), entry_hash=str(row.entry_hash), frontier=list(json.loads(row.frontier)))


def entry_from_row(row: Any) -> AuditEntry:
    """Rebuild the chained entry from a stored row (any field edited in the row shows in its hash)."""
    values: dict[str, Any] = {
        "seq": int(row.seq),
        "ts": row.ts,
        "data": AuditData.model_validate(json.loads(row.data)),
        "action": row.action,
        "outcome": row.outcome,
        "detail": json.loads(row.detail),
        "prev_hash": row.prev_hash,
        "entry_hash": row.entry_hash,
    }
    for name in (
        "actor_id",
        "actor_role",
        "authority_jti",
        "patient_id",
        "purpose_of_use",
        "device_id",
        "ip",
        "establishment",
        "request_id",
        "consultation_id",
    ):
        value = getattr(row, name)
        if value is not None:
            values[name] = value
    return AuditEntry.model_validate(values)


def iter_entries(
    *, session: Session, from_seq: int = 1, to_seq: int | None = None, batch: int = 1000
) -> Iterator[AuditEntry]:
    """Stream entries in seq order, in batches (memory stays bounded for any log size)."""
    conn = _connection(session)
    next_seq = from_seq
    while True:
        stmt = select(_ENTRIES).where(_ENTRIES.c.seq >= next_seq).order_by(_ENTRIES.c.seq).limit(batch)
        if to_seq is not None:
            stmt = stmt.where(_ENTRIES.c.seq <= to_seq)
        rows = conn.execute(stmt).all()
        for row in rows:
            yield entry_from_row(row)
        if len(rows) < batch:
            return
        next_seq = int(rows[-1].seq) + 1


def _checkpoint_from_row(row: Any) -> Checkpoint:
    return Checkpoint(
        tree_size=int(row.tree_size),
        root_hash=row.root_hash,
        last_entry_hash=row.last_entry_hash,
        ts=row.ts,
        key_id=row.key_id,
        signature=row.signature,
    )


def iter_checkpoints(*, session: Session, max_tree_size: int | None = None) -> list[Checkpoint]:
    """All stored checkpoints, smallest tree first (verifiers must not pass ``max_tree_size``)."""
    stmt = select(_CHECKPOINTS).order_by(_CHECKPOINTS.c.tree_size)
    if max_tree_size is not None:
        stmt = stmt.where(_CHECKPOINTS.c.tree_size <= max_tree_size)
    return [_checkpoint_from_row(row) for row in _connection(session).execute(stmt)]


def latest_checkpoint(*, session: Session) -> Checkpoint | None:
    """The checkpoint over the largest tree, if any."""
    row = (
        _connection(session)
        .execute(select(_CHECKPOINTS).order_by(_CHECKPOINTS.c.tree_size.desc()).limit(1))
        .first()
    )
    return None if row is None else _checkpoint_from_row(row)


def create_checkpoint(*, session: Session, private_key: Ed25519PrivateKey) -> Checkpoint | None:
    """Sign the current head if it is not signed yet; None when there is nothing new.

    Refuses (:class:`AuditLogCorrupt`) when a stored checkpoint covers more entries than the
    head, or when the entry at the last signed size is not the one that checkpoint signed.

    Several server processes may race here: the tree size is the key, so the second
    insert of the same checkpoint is ignored.
    """
    conn = _connection(session)
    current = head(session=session)
    if current.seq == 0:
        return None
    latest = latest_checkpoint(session=session)
    if latest is not None and latest.tree_size > current.seq:
        # The head went backwards (entries cut, head reset): signing now would bless the cut.
        log.error("audit head is behind a signed checkpoint", extra={"seq": current.seq})
        raise AuditLogCorrupt(
            f"A signed checkpoint covers {latest.tree_size} entries but the head is at seq {current.seq}"
        )
    if latest is not None and latest.tree_size == current.seq:
        return None
    if latest is not None and latest.tree_size:
        # The entry hash at the last signed size fixes entries 1..size (each hash commits to
        # its predecessor): a different one means the history was rewritten since.
        size = latest.tree_size
        signed = conn.execute(select(_ENTRIES.c.entry_hash).where(_ENTRIES.c.seq == size)).scalar()
        if signed != latest.last_entry_hash:
            log.error("audit entries differ from the last signed checkpoint", extra={"seq": size})
            raise AuditLogCorrupt(f"Entry {size} does not match the signed checkpoint over {size} entries")
    last = conn.execute(select(_ENTRIES.c.entry_hash).where(_ENTRIES.c.seq == current.seq)).scalar()
    if last != current.entry_hash:
        # Never sign a head the entries do not back: that would hide a missing or edited row.
        log.error("audit head does not match the last entry", extra={"seq": current.seq})
        raise AuditLogCorrupt(f"The audit head (seq {current.seq}) does not match the stored entry")
    checkpoint = sign_checkpoint(
        tree_size=current.seq,
        root_hash=current.root(),
        last_entry_hash=current.entry_hash,
        private_key=private_key,
    )
    inserted = _insert_ignore(conn, _CHECKPOINTS, checkpoint.model_dump(mode="json"), "tree_size")
    return checkpoint if inserted else None


def consistency(*, session: Session, first: int, second: int) -> list[str]:
    """RFC 9162 consistency proof from tree size ``first`` to ``second`` over the stored entries.

    Reads entries 1..``second`` (O(second)); refuses sizes outside ``0 <= first <= second <=
    head`` and a log whose entries do not run contiguously up to ``second``.
    """
    end = head(session=session).seq
    if not 0 <= first <= second <= end:
        raise AuditRangeInvalid(
            f"Tree sizes must satisfy 0 <= first <= second <= {end} (the head); "
            f"got first={first}, second={second}"
        )
    hashes: list[str] = []
    for entry in iter_entries(session=session, to_seq=second):
        if entry.seq != len(hashes) + 1:
            break
        hashes.append(entry.entry_hash)
    if len(hashes) != second:
        raise AuditLogInconsistent(
            f"Entry {len(hashes) + 1} is missing from the stored log (the head is at seq {end})"
        )
    return consistency_proof(first, hashes)
