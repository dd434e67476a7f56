"""Append events, export and verify the database log the way the product does, for tests."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text
from sqlmodel import Session

from records.audit.chain import GENESIS_HASH, AuditEntry, chain_entry
from records.audit.export import export_log, verify_export_file
from records.audit.log import EventFields, append_entry, create_checkpoint, iter_entries
from records.audit.merkle import MerkleAccumulator
from records.audit.verify import VerifyReport


def event(n: int, *, patient: str = "patient-a", action: str = "document.read") -> EventFields:
    """A plausible record-access event numbered ``n``."""
    return EventFields(
        action=action,
        outcome="allowed" if n % 4 else "denied",
        actor_id=f"user-{n % 3}",
        actor_role="clinician",
        authority_jti=f"jti-{n // 5}",
        patient_id=patient,
        document_ids=(f"doc-{n}",),
        purpose_of_use="TREAT",
        device_id="laptop-01",
        ip="10.0.0.7",
        request_id=f"req-{n}",
        consultation_id="consult-1",
        detail={"n": n},
    )


def append_many(
    engine: Engine, count: int, *, start: int = 1, patient: str = "patient-a"
) -> list[AuditEntry]:
    """Append ``count`` events, each in its own committed transaction."""
    entries = []
    for n in range(start, start + count):
        with Session(engine) as session:
            entries.append(append_entry(session=session, event=event(n, patient=patient)))
            session.commit()
    return entries


def checkpoint(engine: Engine, key: Ed25519PrivateKey) -> None:
    """Sign the current head."""
    with Session(engine) as session:
        create_checkpoint(session=session, private_key=key)
        session.commit()


def export_text(engine: Engine, include: Callable[[AuditEntry], bool] | None = None) -> str:
    """The export file's text."""
    out = io.StringIO()
    with Session(engine) as session:
        export_log(session=session, out=out, include=include)
    return out.getvalue()


def verify_text(text: str, key: Ed25519PrivateKey) -> VerifyReport:
    """Verify an export's text offline with the audit public key."""
    return verify_export_file(io.StringIO(text), key.public_key())


_APPEND_ONLY = ("audit_entries", "audit_checkpoints")


def as_superuser(engine: Engine, *statements: tuple[str, dict[str, object]] | str) -> None:
    """Run ``statements`` the way someone in full control of the database would: triggers off, then on."""
    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        for table in _APPEND_ONLY:
            if postgres:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
            else:
                for op in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER {table}_no_{op}"))
        for statement in statements:
            sql, params = (statement, {}) if isinstance(statement, str) else statement
            conn.execute(text(sql), params)
        for table in _APPEND_ONLY:
            if postgres:
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
            else:
                for op in ("UPDATE", "DELETE"):
                    conn.execute(
                        text(
                            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                            f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: {op} on {table} "
                            "refused'); END"
                        )
                    )


def head_statement(entries: list[AuditEntry]) -> tuple[str, dict[str, object]]:
    """The UPDATE that sets ``audit_head`` to stand after ``entries`` (seq 1..n, in order)."""
    acc = MerkleAccumulator()
    for entry in entries:
        acc.append(entry.entry_hash)
    return (
        "UPDATE audit_head SET seq = :seq, entry_hash = :hash, frontier = :frontier WHERE id = 1",
        {
            "seq": len(entries),
            "hash": entries[-1].entry_hash if entries else GENESIS_HASH,
            "frontier": json.dumps(acc.frontier()),
        },
    )


def roll_back_head(engine: Engine, to_seq: int) -> None:
    """Cut the log after ``to_seq`` and set the head back to that entry (stored checkpoints untouched)."""
    with Session(engine) as session:
        kept = list(iter_entries(session=session, to_seq=to_seq))
    as_superuser(
        engine, ("DELETE FROM audit_entries WHERE seq > :seq", {"seq": to_seq}), head_statement(kept)
    )


def rewrite_history(engine: Engine, seq: int, *, keep_checkpoints_to: int = 0) -> None:
    """Change entry ``seq`` and re-chain every later one, as an insider with the database would;
    checkpoints over more than ``keep_checkpoints_to`` entries are deleted, the head follows."""
    with Session(engine) as session:
        entries = list(iter_entries(session=session))
    prev = entries[seq - 2].entry_hash if seq > 1 else GENESIS_HASH
    rewritten = entries[: seq - 1]
    statements: list[tuple[str, dict[str, object]] | str] = []
    for entry in entries[seq - 1 :]:
        values = entry.model_dump()
        if entry.seq == seq:
            values["outcome"] = "allowed" if entry.outcome != "allowed" else "denied"
        relinked = chain_entry(prev, values)
        prev = relinked.entry_hash
        rewritten.append(relinked)
        statements.append(
            (
                "UPDATE audit_entries SET outcome = :outcome, prev_hash = :prev, entry_hash = :hash "
                "WHERE seq = :seq",
                {
                    "outcome": relinked.outcome,
                    "prev": relinked.prev_hash,
                    "hash": relinked.entry_hash,
                    "seq": relinked.seq,
                },
            )
        )
    statements.append(("DELETE FROM audit_checkpoints WHERE tree_size > :n", {"n": keep_checkpoints_to}))
    statements.append(head_statement(rewritten))
    as_superuser(engine, *statements)


def cut_log(engine: Engine, to_seq: int) -> None:
    """Cut the log after ``to_seq``, delete the checkpoints beyond it and set the head back."""
    roll_back_head(engine, to_seq)
    as_superuser(engine, ("DELETE FROM audit_checkpoints WHERE tree_size > :n", {"n": to_seq}))
