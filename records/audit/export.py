"""Exporting the database log in the verifier's JSON-lines format, whole or filtered.

A whole export is exactly ``records.audit.verify``'s format (checkpoints, then every
entry from seq 1). A *filtered* export (by time or patient) must still be verifiable, so
entries outside the filter are not dropped but **redacted** to their chain links::

    {"type":"redacted","seq":7,"prev_hash":"…","entry_hash":"…"}

Redacted lines keep the hash chain and the Merkle tree whole, so the signed checkpoints
still verify and a deleted, reordered or edited *shown* entry is still detected; what a
redacted entry said cannot be checked (or read) by whoever holds the file.
:func:`verify_export_file` verifies both kinds of file offline.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pydantic import ValidationError
from sqlmodel import Session

from records.audit.chain import GENESIS_HASH, HASH_PATTERN, AuditEntry, canonical_json
from records.audit.checkpoint import Checkpoint, PublicKeys, public_key_map
from records.audit.log import head, iter_checkpoints, iter_entries
from records.audit.merkle import MerkleAccumulator
from records.audit.verify import (
    Distrust,
    Line,
    VerifyReport,
    checkpoint_trust,
    exact_line,
    malformed_message,
    parse_line,
    read_export,
    verify_export,
    where,
)
from records.audit.witness import Cosignature, check_witnessed

__all__ = ["ExportStats", "StoredVerification", "export_log", "verify_export_file", "verify_stored_log"]

_HASH = re.compile(HASH_PATTERN)


@dataclass(frozen=True)
class ExportStats:
    """What an export wrote."""

    entries: int
    redacted: int
    checkpoints: int
    head_seq: int
    key_ids: tuple[str, ...] = ()
    """The audit keys the written checkpoints name, in order of first use: the verifier needs each."""


def _line(kind: str, values: Mapping[str, Any]) -> str:
    return canonical_json({**values, "type": kind}).decode("utf-8") + "\n"


def export_log(
    *, session: Session, out: TextIO, include: Callable[[AuditEntry], bool] | None = None
) -> ExportStats:
    """Write checkpoints then every entry up to the current head; ``include`` redacts the rest."""
    checkpoints, end = _checkpoints_then_head(session)
    for checkpoint in checkpoints:
        out.write(_line("checkpoint", checkpoint.model_dump(mode="json")))
    shown = redacted = 0
    for entry in iter_entries(session=session, to_seq=end):
        if include is None or include(entry):
            out.write(_line("entry", entry.to_export()))
            shown += 1
        else:
            link = {"seq": entry.seq, "prev_hash": entry.prev_hash, "entry_hash": entry.entry_hash}
            out.write(_line("redacted", link))
            redacted += 1
    return ExportStats(
        entries=shown,
        redacted=redacted,
        checkpoints=len(checkpoints),
        head_seq=end,
        key_ids=tuple(dict.fromkeys(c.key_id for c in checkpoints)),
    )


def _checkpoints_then_head(session: Session) -> tuple[list[Checkpoint], int]:
    """Every stored checkpoint, then the head: in this order a concurrent checkpoint can never
    look like one beyond the head, and a checkpoint beyond the head (a rolled-back head) is kept
    so that it fails verification as truncation instead of vanishing from the check."""
    checkpoints = iter_checkpoints(session=session)
    return checkpoints, head(session=session).seq


@dataclass(frozen=True)
class StoredVerification:
    """The verifier's report on the stored log, and the head it ran up to."""

    report: VerifyReport
    head_seq: int


def verify_stored_log(*, session: Session, public_key: PublicKeys) -> StoredVerification:
    """Verify every stored entry up to the head against every stored checkpoint, now."""
    checkpoints, end = _checkpoints_then_head(session)
    entries = (e.to_export() for e in iter_entries(session=session, to_seq=end))
    report = verify_export(entries, [c.model_dump(mode="json") for c in checkpoints], public_key)
    return StoredVerification(report=report, head_seq=end)


# --- Offline verification of whole and filtered exports --------------------------------------


def _lines(stream: TextIO) -> Iterator[tuple[int, Line]]:
    for number, line in enumerate(stream, start=1):
        parsed = parse_line(line, number)
        if parsed is not None:
            yield number, parsed


class _State:
    def __init__(self, checkpoints: list[tuple[Checkpoint, Distrust | None]]) -> None:
        self.pending = sorted(checkpoints, key=lambda c: c[0].tree_size)
        self.next_cp = 0
        self.anchored = 0
        self.checked = 0
        self.expected = 1
        self.prev_hash = GENESIS_HASH
        self.acc = MerkleAccumulator()

    def fail(self, problem: Any, seq: int | None, message: str) -> VerifyReport:
        return VerifyReport(
            ok=False,
            entries_checked=self.expected - 1,
            checkpoints_checked=self.checked,
            first_bad_seq=seq,
            problem=problem,
            message=message,
            anchored_size=self.anchored,
            unanchored_entries=self.expected - 1 - self.anchored,
        )

    def checkpoints_at_size(self) -> VerifyReport | None:
        size = self.acc.size
        while self.next_cp < len(self.pending) and self.pending[self.next_cp][0].tree_size == size:
            checkpoint, distrust = self.pending[self.next_cp]
            if distrust is not None:
                return self.fail(distrust[0], None, distrust[1])
            if not (
                hmac.compare_digest(checkpoint.root_hash, self.acc.root())
                and hmac.compare_digest(checkpoint.last_entry_hash, self.prev_hash)
            ):
                first = self.anchored + 1
                return self.fail(
                    "forged_checkpoint",
                    first if size else None,
                    f"Entries {first}..{size} do not match the signed checkpoint at tree size {size}",
                )
            self.anchored = size
            self.checked += 1
            self.next_cp += 1
        return None


def _link(values: Mapping[str, Any]) -> tuple[int, str, str] | None:
    seq, prev, digest = values.get("seq"), values.get("prev_hash"), values.get("entry_hash")
    if (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and isinstance(prev, str)
        and isinstance(digest, str)
        and _HASH.match(prev)
        and _HASH.match(digest)
    ):
        return seq, prev, digest
    return None


def _verify_redacted(stream: TextIO, keys: PublicKeys) -> VerifyReport:
    key_map = public_key_map(keys)
    start = stream.tell()
    parsed: list[tuple[Checkpoint, Distrust | None]] = []
    for number, raw in _lines(stream):
        if raw.get("type") != "checkpoint":
            continue
        try:
            checkpoint = Checkpoint.model_validate({k: v for k, v in raw.items() if k != "type"})
        except ValidationError:
            return _State([]).fail("malformed", None, f"The checkpoint on line {number} is malformed")
        if not exact_line(raw, "checkpoint", checkpoint.model_dump(mode="json")):
            return _State([]).fail("malformed", None, f"Line {number} is not exactly the checkpoint it holds")
        parsed.append((checkpoint, checkpoint_trust(checkpoint, key_map)))
    state = _State(parsed)
    if failure := state.checkpoints_at_size():
        return failure
    shown = 0
    stream.seek(start)
    for _number, raw in _lines(stream):
        kind = raw.get("type")
        if kind == "checkpoint":
            continue
        expected = state.expected
        values = {k: v for k, v in raw.items() if k != "type"}
        if kind == "entry":
            try:
                entry = AuditEntry.model_validate(values)
            except ValidationError:
                return state.fail("malformed", expected, malformed_message(raw, expected))
            if not exact_line(raw, "entry", entry.to_export()):
                return state.fail(
                    "malformed",
                    expected,
                    f"{where(raw)} (where seq {expected} belongs) is not exactly the entry it holds",
                )
            link: tuple[int, str, str] | None = (entry.seq, entry.prev_hash, entry.entry_hash)
            intact = entry.is_intact()
        elif kind == "redacted":
            link, intact = _link(values), True
            if link is not None and not exact_line(
                raw, "redacted", {"seq": link[0], "prev_hash": link[1], "entry_hash": link[2]}
            ):
                return state.fail(
                    "malformed",
                    expected,
                    f"{where(raw)} (where seq {expected} belongs) is not exactly a redacted link",
                )
        else:
            link, intact = None, False
        if link is None:
            return state.fail("malformed", expected, malformed_message(raw, expected))
        seq, prev_hash, entry_hash = link
        if seq < expected:
            return state.fail("reordered", expected, f"Seq {seq} appears where seq {expected} belongs")
        if seq > expected:
            span = f"Entry {expected} is" if seq == expected + 1 else f"Entries {expected}..{seq - 1} are"
            return state.fail("deleted", expected, f"{span} missing (seq jumps to {seq})")
        if not intact:
            return state.fail("edited", seq, f"Entry {seq} does not match its entry_hash")
        if not hmac.compare_digest(prev_hash, state.prev_hash):
            suspect = seq - 1 if seq - 1 > state.anchored else seq
            return state.fail("reordered", suspect, f"Entry {seq} is not chained to entry {seq - 1}")
        state.acc.append(entry_hash)
        state.prev_hash = entry_hash
        state.expected += 1
        shown += kind == "entry"
        if failure := state.checkpoints_at_size():
            return failure
    total = state.expected - 1
    if state.next_cp < len(state.pending):
        checkpoint, distrust = state.pending[state.next_cp]
        if distrust is not None:
            return state.fail(distrust[0], None, distrust[1])
        return state.fail(
            "truncated",
            total + 1,
            f"The log ends at seq {total} but a signed checkpoint covers {checkpoint.tree_size} entries: "
            f"entries after seq {total} were removed or the head was set back",
        )
    tail = total - state.anchored
    message = (
        f"{total} entries chained ({shown} shown, {total - shown} redacted); "
        f"{state.checked} checkpoints verified"
        + (f"; the last {tail} entries are not yet covered by a signed checkpoint" if tail else "")
    )
    return VerifyReport(
        ok=True,
        entries_checked=total,
        checkpoints_checked=state.checked,
        message=message,
        anchored_size=state.anchored,
        unanchored_entries=tail,
    )


def verify_export_file(
    stream: TextIO,
    keys: PublicKeys,
    *,
    cosignatures: Sequence[Cosignature] | None = None,
    witness_keys: PublicKeys | None = None,
) -> VerifyReport:
    """Verify a whole or filtered export file offline (needs only the audit public key).

    With the witness's ``cosignatures`` and public key, the entries must also match every
    tree head the witness co-signed (``records.audit.witness.check_witnessed``).
    """
    start = stream.tell()
    redacted = any(raw.get("type") == "redacted" for _n, raw in _lines(stream))
    stream.seek(start)
    if redacted:
        report = _verify_redacted(stream, keys)
    else:
        export = read_export(stream)
        report = verify_export(export.entries, export.checkpoints, keys)
    if witness_keys is None or not report.ok:
        return report
    stream.seek(start)
    return check_witnessed((raw for _n, raw in _lines(stream)), cosignatures or (), witness_keys, report)
