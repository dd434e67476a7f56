"""Offline verification of an audit export, and the JSON-lines export format itself.

Export format (one JSON object per line, UTF-8, ``\\n``-terminated)::

    {"type":"checkpoint", "tree_size":..., "root_hash":..., "last_entry_hash":..., "ts":...,
     "key_id":..., "signature":...}          -- all checkpoints first, by tree_size
    {"type":"entry", "seq":1, ..., "prev_hash":..., "entry_hash":...}
    {"type":"entry", "seq":2, ...}           -- then every entry from seq 1, in order

The verifier streams the entries (memory is O(log n) plus the checkpoints) and names the
first entry that cannot be trusted. See ``docs/audit.md`` for what it can and cannot prove.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from records.audit.chain import GENESIS_HASH, AuditEntry, canonical_json
from records.audit.checkpoint import (
    Checkpoint,
    PublicKeys,
    public_key_map,
    verify_checkpoint_signature,
)
from records.audit.merkle import MerkleAccumulator
from records.errors import AuditVerifyFailed

__all__ = [
    "AuditExport",
    "Line",
    "Problem",
    "VerifyReport",
    "checkpoint_trust",
    "exact_line",
    "malformed_message",
    "parse_line",
    "read_export",
    "verify_export",
    "where",
    "write_export",
]

Problem = Literal[
    "edited",
    "deleted",
    "reordered",
    "truncated",
    "forged_checkpoint",
    "unknown_key",
    "malformed",
    "forged_cosignature",
    "witness_mismatch",
]


class VerifyReport(BaseModel):
    """Outcome of verifying an export; on failure ``first_bad_seq`` is the first untrusted entry.

    Entries ``1 .. first_bad_seq - 1`` verified in place; ``None`` when the problem is not
    tied to an entry (a checkpoint with a bad signature, a malformed checkpoint line).
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    entries_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    problem: Problem | None = None
    message: str
    anchored_size: int = 0
    """Entries covered by the largest checkpoint that verified."""
    unanchored_entries: int = 0
    """Entries after that checkpoint: hash-chained only, see docs/audit.md."""
    witnessed_size: int = 0
    """Entries covered by the largest tree head the witness co-signed (0 without a witness)."""

    def raise_if_failed(self) -> None:
        """Raise :class:`AuditVerifyFailed` carrying this report unless it is ok."""
        if not self.ok:
            raise AuditVerifyFailed(self)


Distrust = tuple[Problem, str]
"""Why a checkpoint's signature is not trusted: the problem and the message."""


def checkpoint_trust(checkpoint: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> Distrust | None:
    """``None`` when ``checkpoint`` is signed by the key its ``key_id`` names among ``keys``."""
    at = f"Checkpoint at tree size {checkpoint.tree_size}"
    if checkpoint.key_id not in keys:
        given = f"the {len(keys)} public keys given" if len(keys) != 1 else "the public key given"
        return (
            "unknown_key",
            f"{at} names audit key {checkpoint.key_id}, which is not {given}: give its public key "
            "too if it is a genuine audit key (telemed audit public-key writes them all), "
            "else the checkpoint is forged",
        )
    if not verify_checkpoint_signature(checkpoint, keys):
        return "forged_checkpoint", f"{at} has a signature that does not verify under key {checkpoint.key_id}"
    return None


@dataclass
class _Checkpoint:
    checkpoint: Checkpoint
    distrust: Distrust | None


class _Verifier:
    def __init__(self, checkpoints: list[_Checkpoint]) -> None:
        self.pending = sorted(checkpoints, key=lambda c: c.checkpoint.tree_size)
        self.next_cp = 0
        self.anchored = 0
        self.cps_checked = 0
        self.expected = 1
        self.prev_hash = GENESIS_HASH
        self.acc = MerkleAccumulator()

    def fail(self, problem: Problem, first_bad_seq: int | None, message: str) -> VerifyReport:
        return VerifyReport(
            ok=False,
            entries_checked=self.expected - 1,
            checkpoints_checked=self.cps_checked,
            first_bad_seq=first_bad_seq,
            problem=problem,
            message=message,
            anchored_size=self.anchored,
            unanchored_entries=self.expected - 1 - self.anchored,
        )

    def check_checkpoints(self) -> VerifyReport | None:
        """Check every checkpoint whose tree_size equals the entries verified so far."""
        size = self.acc.size
        while self.next_cp < len(self.pending):
            item = self.pending[self.next_cp]
            cp = item.checkpoint
            if cp.tree_size != size:
                return None
            if item.distrust is not None:
                return self.fail(item.distrust[0], None, item.distrust[1])
            last = self.prev_hash
            root_ok = hmac.compare_digest(cp.root_hash, self.acc.root())
            if not root_ok or not hmac.compare_digest(cp.last_entry_hash, last):
                first = self.anchored + 1
                return self.fail(
                    "forged_checkpoint",
                    first if size else None,
                    f"Entries {first}..{size} do not match the signed checkpoint at tree size "
                    f"{size}: an entry in that range was rewritten and the chain re-hashed, "
                    "or the checkpoint is not from this log",
                )
            self.anchored = size
            self.cps_checked += 1
            self.next_cp += 1
        return None


def _strip_type(raw: Mapping[str, Any], expected: str) -> dict[str, Any]:
    values = dict(raw)
    kind = values.pop("type", expected)
    if kind != expected:
        raise ValueError(f"line of type {kind!r} where {expected!r} was expected")
    return values


def _raw_seq(raw: object) -> int | None:
    if isinstance(raw, Mapping):
        seq = raw.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return None


def verify_export(
    entries: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]],
    public_key: PublicKeys,
) -> VerifyReport:
    """Verify a full export (entries from seq 1, in order) against signed checkpoints."""
    keys = public_key_map(public_key)
    parsed: list[_Checkpoint] = []
    for number, raw in enumerate(checkpoints, start=1):
        try:
            cp = Checkpoint.model_validate(_strip_type(raw, "checkpoint"))
        except (ValidationError, ValueError, TypeError):
            return _Verifier([]).fail("malformed", None, f"Checkpoint #{number} is malformed")
        if not exact_line(raw, "checkpoint", cp.model_dump(mode="json")):
            return _Verifier([]).fail(
                "malformed",
                None,
                f"{where(raw)} (checkpoint #{number}) is not exactly the checkpoint it holds",
            )
        parsed.append(_Checkpoint(cp, checkpoint_trust(cp, keys)))

    state = _Verifier(parsed)
    if failure := state.check_checkpoints():
        return failure
    stream = iter(entries)
    for raw in stream:
        expected = state.expected
        if raw.get("type") == "malformed":
            return state.fail("malformed", expected, malformed_message(raw, expected))
        try:
            entry = AuditEntry.model_validate(_strip_type(raw, "entry"))
        except (ValidationError, ValueError, TypeError):
            return state.fail("malformed", expected, malformed_message(raw, expected))
        if not exact_line(raw, "entry", entry.to_export()):
            # A field the entry does not hash (a null, a default spelt out) could hide a second
            # reading of the same line: one line, one meaning.
            return state.fail(
                "malformed",
                expected,
                f"{where(raw)} (where seq {expected} belongs) is not exactly the entry it holds",
            )
        if entry.seq < expected:
            return state.fail(
                "reordered",
                expected,
                f"Seq {entry.seq} appears where seq {expected} belongs (sequence goes backwards)",
            )
        if entry.seq > expected:
            return _classify_gap(state, stream, missing_to=entry.seq - 1)
        if not entry.is_intact():
            return state.fail("edited", entry.seq, f"Entry {entry.seq} does not match its entry_hash")
        if not hmac.compare_digest(entry.prev_hash, state.prev_hash):
            # The previous entry verified alone but is not the one this entry was chained to:
            # it was rewritten and re-hashed, or entries were moved or renumbered.
            suspect = entry.seq - 1 if entry.seq - 1 > state.anchored else entry.seq
            return state.fail(
                "reordered",
                suspect,
                f"Entry {entry.seq} is not chained to entry {entry.seq - 1} (prev_hash differs)",
            )
        state.acc.append(entry.entry_hash)
        state.prev_hash = entry.entry_hash
        state.expected += 1
        if failure := state.check_checkpoints():
            return failure

    total = state.expected - 1
    if state.next_cp < len(state.pending):
        item = state.pending[state.next_cp]
        size = item.checkpoint.tree_size
        if item.distrust is not None:
            return state.fail(item.distrust[0], None, item.distrust[1])
        return state.fail(
            "truncated",
            total + 1,
            f"The log ends at seq {total} but a signed checkpoint covers {size} entries: "
            f"entries after seq {total} were removed or the head was set back",
        )
    tail = total - state.anchored
    if not parsed:
        message = (
            f"{total} entries form an intact chain, but no signed checkpoint anchors them: "
            "truncation or a re-hashed rewrite could not be detected"
        )
    elif tail:
        message = (
            f"{total} entries verified; {state.cps_checked} checkpoints verified; the last "
            f"{tail} entries (after seq {state.anchored}) are chained but not yet signed"
        )
    else:
        message = (
            f"{total} entries verified; {state.cps_checked} checkpoints verified; every "
            "entry is covered by a signed checkpoint"
        )
    return VerifyReport(
        ok=True,
        entries_checked=total,
        checkpoints_checked=state.cps_checked,
        message=message,
        anchored_size=state.anchored,
        unanchored_entries=tail,
    )


def _classify_gap(state: _Verifier, rest: Iterator[Mapping[str, Any]], *, missing_to: int) -> VerifyReport:
    """A seq jumped ahead: reordered if a missing seq shows up later, deleted otherwise."""
    first = state.expected
    for raw in rest:
        seq = _raw_seq(raw)
        if seq is not None and first <= seq <= missing_to:
            return state.fail(
                "reordered",
                first,
                f"Seq {seq} appears after seq {missing_to + 1}: entries are out of order",
            )
    span = f"Entry {first} is" if first == missing_to else f"Entries {first}..{missing_to} are"
    return state.fail("deleted", first, f"{span} missing (seq jumps to {missing_to + 1})")


# --- Export format -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditExport:
    """A parsed export: checkpoints in memory, entries streamed lazily."""

    checkpoints: list[dict[str, Any]]
    entries: Iterator[dict[str, Any]]


def _line(kind: str, values: Mapping[str, Any]) -> str:
    return canonical_json({**values, "type": kind}).decode("utf-8") + "\n"


def write_export(
    entries: Iterable[AuditEntry | Mapping[str, Any]],
    checkpoints: Iterable[Checkpoint | Mapping[str, Any]],
    out: TextIO,
) -> int:
    """Write checkpoints (by tree_size) then entries (as given) as JSON lines; return lines."""
    cps = [c.model_dump(mode="json") if isinstance(c, Checkpoint) else dict(c) for c in checkpoints]
    cps.sort(key=lambda c: c.get("tree_size", 0))
    for cp in cps:
        out.write(_line("checkpoint", cp))
    count = len(cps)
    for entry in entries:
        values = entry.to_export() if isinstance(entry, AuditEntry) else entry
        out.write(_line("entry", values))
        count += 1
    return count


class Line(dict[str, Any]):
    """One parsed export line: its JSON object, and where it stands in the file (1-based)."""

    def __init__(self, values: Mapping[str, Any], number: int) -> None:
        super().__init__(values)
        self.number = number


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key in values:
            raise _DuplicateKey(key)
        values[key] = value
    return values


_FIELD_NAME = re.compile(r"^[a-z_]{1,40}$")


def _malformed(number: int, reason: str) -> Line:
    return Line({"type": "malformed", "line": number, "reason": reason}, number)


def parse_line(line: str, number: int) -> Line | None:
    """Parse export line ``number``; a line that is not exactly canonical JSON becomes a malformed marker.

    The line (without its ``\\n``) must be byte for byte ``canonical_json`` of the object it
    holds, which also refuses duplicate keys, whitespace, escapes where UTF-8 is due, and
    numbers spelt another way. ``None`` only for the empty string (end of input).
    """
    if not line:
        return None
    text = line[:-1] if line.endswith("\n") else line
    if not text:
        return _malformed(number, "is empty")
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        key = str(exc)
        named = f' "{key}"' if _FIELD_NAME.match(key) else ""
        return _malformed(number, f"has the key{named} twice")
    except (ValueError, RecursionError):
        return _malformed(number, "is not JSON")
    if not isinstance(value, dict):
        return _malformed(number, "is not a JSON object")
    try:
        canonical = canonical_json(value)
        exact = canonical == text.encode("utf-8")
    except (ValueError, TypeError):  # NaN, lone surrogates, bytes that were not UTF-8
        exact = False
    if not exact:
        return _malformed(number, "is not in canonical form (see docs/audit.md, Export format)")
    return Line(value, number)


def exact_line(raw: Mapping[str, Any], kind: str, values: Mapping[str, Any]) -> bool:
    """True when ``raw`` (a parsed line) is exactly the line ``values`` is written as."""
    # Verifying stored entries passes dicts without ``type``: they are of the kind expected.
    try:
        return canonical_json({"type": kind, **raw}) == canonical_json({**values, "type": kind})
    except (ValueError, TypeError):
        return False


def where(raw: Mapping[str, Any]) -> str:
    """``Line N`` for a line read from a file, else ``The line``."""
    number = getattr(raw, "number", None)
    return f"Line {number}" if number is not None else "The line"


def malformed_message(raw: Mapping[str, Any], expected: int | None) -> str:
    """Why a line is refused, naming the line and the seq it stands for."""
    at = f" (where seq {expected} belongs)" if expected is not None else ""
    reason = raw.get("reason") if raw.get("type") == "malformed" else None
    return f"{where(raw)}{at} {reason or 'does not parse as an audit line'}"


def read_export(stream: TextIO) -> AuditExport:
    """Read a JSON-lines export; checkpoints are collected, entries are yielded lazily.

    A seekable stream is scanned twice, so checkpoint lines may appear anywhere; from a
    pipe, checkpoints must come first (as :func:`write_export` writes them) and a later
    checkpoint line reaches the verifier as a malformed entry.
    """
    if stream.seekable():
        start = stream.tell()
        checkpoints: list[dict[str, Any]] = []
        number = 0
        while line := stream.readline():
            number += 1
            parsed = parse_line(line, number)
            if parsed is not None and parsed.get("type") == "checkpoint":
                checkpoints.append(parsed)
        stream.seek(start)
        return AuditExport(checkpoints, _entries_seekable(stream))
    leading: list[dict[str, Any]] = []
    number = 0
    while line := stream.readline():
        number += 1
        parsed = parse_line(line, number)
        if parsed is None:
            continue
        if parsed.get("type") != "checkpoint":
            return AuditExport(leading, _entries_pipe(stream, parsed, number))
        leading.append(parsed)
    return AuditExport(leading, iter(()))


def _entries_seekable(stream: TextIO) -> Iterator[dict[str, Any]]:
    number = 0
    while line := stream.readline():
        number += 1
        parsed = parse_line(line, number)
        if parsed is not None and parsed.get("type") != "checkpoint":
            yield parsed


def _entries_pipe(stream: TextIO, first: dict[str, Any], number: int) -> Iterator[dict[str, Any]]:
    yield first
    while line := stream.readline():
        number += 1
        parsed = parse_line(line, number)
        if parsed is not None:
            yield parsed
