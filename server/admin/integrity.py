"""Audit integrity for people: where the log stands, a verification run now, and what a failure means.

The check itself is the records library's offline verifier (``records.audit.verify``) run
over the stored entries and signed checkpoints, exactly as ``GET /api/v1/audit/verify``
does; this module says the result in plain words. The last result is read back from the
log itself (the newest ``audit.verify`` entry), so every node and every admin sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from records.audit import export as audit_export
from records.audit.checkpoint import Checkpoint, PublicKeys
from records.audit.log import head, latest_checkpoint
from records.audit.query import AuditQuery, query_entries
from records.audit.verify import VerifyReport


@dataclass(frozen=True)
class Verification:
    """A verification run: the verifier's report and the head it ran up to."""

    report: VerifyReport
    head_seq: int


def verify_stored_log(*, session: Session, public_key: PublicKeys) -> Verification:
    """Verify every stored entry against the signed checkpoints, now (``public_key``: every audit key)."""
    # Every stored checkpoint, also one beyond a rolled-back head (records.audit.export).
    stored = audit_export.verify_stored_log(session=session, public_key=public_key)
    return Verification(report=stored.report, head_seq=stored.head_seq)


def readable_ts(ts: str) -> str:
    """An entry's RFC 3339 time as people read it: ``2026-12-05 16:02:16 UTC``."""
    return f"{ts[:10]} {ts[11:19]} UTC" if len(ts) >= 19 else ts


def summary(report: VerifyReport, checkpoint: Checkpoint | None) -> str:
    """The result in a sentence a person can act on (numbers only, never entry contents)."""
    n = report.first_bad_seq
    if report.ok:
        text = f"The audit log verifies: all {report.entries_checked} entries are intact."
        if checkpoint is not None and report.anchored_size:
            signed = readable_ts(checkpoint.ts)
            text += f" Entries 1 to {report.anchored_size} are covered by a checkpoint signed at {signed}."
        if report.unanchored_entries:
            text += (
                f" The newest {report.unanchored_entries} entries are chained and will be covered by the "
                "next signed checkpoint."
            )
        return text
    problems = {
        "edited": f"Entry {n} has been changed since it was written.",
        "deleted": f"Entries are missing from the log, starting at entry {n}.",
        "reordered": f"The log is out of order at entry {n}: entries were moved, copied or rewritten.",
        "truncated": (
            f"The log ends early: a signed checkpoint covers entries that are gone (from entry {n})."
        ),
        "forged_checkpoint": (
            f"A signed checkpoint does not match the entries, starting at entry {n}."
            if n
            else "A checkpoint carries a signature that is not valid."
        ),
        "unknown_key": (
            "A checkpoint is signed by a key that is not one of this server's audit keys "
            "(neither the current key nor a retired one)."
        ),
        "malformed": f"Entry {n} cannot be read." if n else "A checkpoint cannot be read.",
    }
    said = problems.get(str(report.problem), "The audit log does not verify.")
    trusted = f" Entries 1 to {n - 1} verify." if n and n > 1 else ""
    return (
        f"The audit log has been tampered with. {said}{trusted} Do not rely on this log as evidence until "
        "it is investigated: tell your information governance lead and keep an export of the log."
    )


def last_verification(*, session: Session) -> dict[str, Any] | None:
    """The newest recorded verification: when, by whom, and its result."""
    found = query_entries(session=session, query=AuditQuery(action="audit.verify", sort="-seq", limit=1))
    if not found.entries:
        return None
    entry = found.entries[0]
    return {
        "seq": entry.seq,
        "at": entry.ts,
        "by": entry.actor_id,
        "ok": entry.outcome == "success",
        "entries_checked": entry.detail.get("entries"),
        "problem": entry.detail.get("problem"),
        "first_bad_seq": entry.detail.get("first_bad_seq"),
    }


def current_checkpoint(*, session: Session) -> Checkpoint | None:
    """The newest signed checkpoint."""
    return latest_checkpoint(session=session)


def head_seq(*, session: Session) -> int:
    """The number of entries in the log."""
    return head(session=session).seq
