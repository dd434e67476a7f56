"""The offline verifier names the first bad entry for every kind of tampering."""

from __future__ import annotations

import base64
import copy
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from records.audit.chain import GENESIS_HASH, AuditEntry, canonical_json, chain_entry, format_ts
from records.audit.checkpoint import Checkpoint, audit_key_id, sign_checkpoint
from records.audit.merkle import merkle_root
from records.audit.verify import VerifyReport, read_export, verify_export, write_export
from records.errors import AuditVerifyFailed

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
N = 1000
KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()
PATIENT = "A1234BC"


def fields(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": format_ts(T0 + timedelta(seconds=seq)),
        "actor_id": f"user-{seq % 5}",
        "actor_role": "clinician",
        "authority_jti": f"grant-{seq // 10}",
        "patient_id": PATIENT,
        "data": {"document_ids": [f"doc-{seq}"]},
        "action": "document.read" if seq % 3 else "grant.deny",
        "outcome": "allowed" if seq % 3 else "denied",
        "purpose_of_use": "TREAT",
        "device_id": "laptop-7",
        "ip": "10.1.2.3",
        "establishment": "HMP Example",
        "request_id": f"req-{seq}",
        "detail": {"n": seq},
    }


def build(n: int, first_seq: int = 1, prev: str = GENESIS_HASH) -> list[AuditEntry]:
    entries = []
    for seq in range(first_seq, first_seq + n):
        entry = chain_entry(prev, fields(seq))
        entries.append(entry)
        prev = entry.entry_hash
    return entries


def checkpoint_at(entries: list[AuditEntry], size: int, key: Ed25519PrivateKey = KEY) -> Checkpoint:
    return sign_checkpoint(
        tree_size=size,
        root_hash=merkle_root(e.entry_hash for e in entries[:size]),
        last_entry_hash=entries[size - 1].entry_hash if size else GENESIS_HASH,
        private_key=key,
        ts=format_ts(T0 + timedelta(seconds=size, milliseconds=1)),
    )


@pytest.fixture(scope="module")
def chain() -> list[AuditEntry]:
    return build(N)


@pytest.fixture(scope="module")
def signed(chain: list[AuditEntry]) -> list[dict[str, Any]]:
    return [checkpoint_at(chain, size).model_dump() for size in range(100, N + 1, 100)]


@pytest.fixture
def export(chain: list[AuditEntry]) -> list[dict[str, Any]]:
    return [e.to_export() for e in chain]


@pytest.fixture
def cps(signed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return copy.deepcopy(signed)


def verify(entries: list[dict[str, Any]], checkpoints: list[dict[str, Any]]) -> VerifyReport:
    report = verify_export(iter(entries), checkpoints, PUBLIC)
    assert PATIENT not in report.message
    return report


def assert_problem(report: VerifyReport, problem: str, first_bad_seq: int | None) -> None:
    assert not report.ok
    assert (report.problem, report.first_bad_seq) == (problem, first_bad_seq), report.message


# --- intact ---------------------------------------------------------------------------------------


def test_intact_chain_of_1000_entries_verifies(
    export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    report = verify(export, cps)

    assert report.ok, report.message
    assert report.entries_checked == 1000
    assert report.checkpoints_checked == 10
    assert report.anchored_size == 1000 and report.unanchored_entries == 0
    assert report.problem is None and report.first_bad_seq is None
    report.raise_if_failed()


def test_entries_after_the_last_checkpoint_are_reported_as_unanchored(
    export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    report = verify(export, cps[:-1])

    assert report.ok
    assert (report.anchored_size, report.unanchored_entries) == (900, 100)
    assert "100 entries (after seq 900) are chained but not yet signed" in report.message


def test_chain_without_checkpoints_says_it_is_unanchored(export: list[dict[str, Any]]) -> None:
    report = verify(export, [])

    assert report.ok
    assert report.unanchored_entries == 1000
    assert "no signed checkpoint" in report.message


def test_empty_log_with_empty_checkpoint() -> None:
    report = verify([], [checkpoint_at([], 0).model_dump()])

    assert report.ok and report.checkpoints_checked == 1


# --- tampering ------------------------------------------------------------------------------------


def test_edited_field_names_that_entry(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    export[499]["patient_id"] = "Z9999ZZ"

    report = verify(export, cps)

    assert_problem(report, "edited", 500)
    assert report.entries_checked == 499
    assert "Z9999ZZ" not in report.message


def test_edited_outcome_in_the_unsigned_tail_is_still_caught(
    export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    export[950]["outcome"] = "allowed" if export[950]["outcome"] == "denied" else "denied"

    assert_problem(verify(export, cps[:-1]), "edited", 951)


def test_deleted_entry(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    del export[499]

    report = verify(export, cps)

    assert_problem(report, "deleted", 500)
    assert "Entry 500 is missing" in report.message


def test_deleted_range(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    del export[10:20]

    report = verify(export, cps)

    assert_problem(report, "deleted", 11)
    assert "Entries 11..20 are missing" in report.message


def test_swapped_adjacent_entries(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    export[499], export[500] = export[500], export[499]

    assert_problem(verify(export, cps), "reordered", 500)


def test_swapped_distant_entries(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    export[299], export[699] = export[699], export[299]

    assert_problem(verify(export, cps), "reordered", 300)


def test_duplicated_entry(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    export.insert(600, copy.deepcopy(export[400]))

    assert_problem(verify(export, cps), "reordered", 601)


def test_truncated_after_a_checkpoint(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    report = verify(export[:950], cps)

    assert_problem(report, "truncated", 951)
    assert report.entries_checked == 950
    assert "covers 1000 entries" in report.message


def test_truncation_inside_the_unsigned_tail_is_not_detectable(
    export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    # Documented limit: entries after the newest checkpoint can be cut without trace.
    report = verify(export[:950], cps[:-1])

    assert report.ok
    assert report.unanchored_entries == 50


def test_forged_checkpoint_signature(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    raw = bytearray(64)
    cps[4]["signature"] = base64.b64encode(bytes(raw)).decode()

    report = verify(export, cps)

    assert_problem(report, "forged_checkpoint", None)
    assert "tree size 500" in report.message
    assert report.entries_checked == 500


def test_checkpoint_signed_by_another_key(
    chain: list[AuditEntry], export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    other = checkpoint_at(chain, 1000, key=Ed25519PrivateKey.generate())
    cps.append(other.model_dump())

    report = verify(export, cps)

    assert_problem(report, "unknown_key", None)
    assert report.message == (
        f"Checkpoint at tree size 1000 names audit key {other.key_id}, which is not the public key given: "
        "give its public key too if it is a genuine audit key (telemed audit public-key writes them all), "
        "else the checkpoint is forged"
    )


def test_checkpoint_naming_a_known_key_but_signed_by_another(
    chain: list[AuditEntry], export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    other = checkpoint_at(chain, 1000, key=Ed25519PrivateKey.generate())
    relabelled = Checkpoint.model_validate({**other.model_dump(), "key_id": audit_key_id(PUBLIC)})
    cps.append(relabelled.model_dump())

    report = verify(export, cps)

    assert_problem(report, "forged_checkpoint", None)
    assert report.message == (
        f"Checkpoint at tree size 1000 has a signature that does not verify under key {audit_key_id(PUBLIC)}"
    )


def test_checkpoints_across_key_rotations_verify_with_every_key(
    chain: list[AuditEntry], export: list[dict[str, Any]]
) -> None:
    second, third = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    rotated = [
        checkpoint_at(chain, size, key=KEY if size <= 300 else second if size <= 600 else third).model_dump()
        for size in range(100, N + 1, 100)
    ]
    keys = [PUBLIC, second.public_key(), third.public_key()]

    report = verify_export(iter(export), rotated, keys)
    assert report.ok and report.checkpoints_checked == 10, report.message

    missing = verify_export(iter(export), rotated, keys[1:])
    assert_problem(missing, "unknown_key", None)
    assert (
        f"Checkpoint at tree size 100 names audit key {audit_key_id(PUBLIC)}, which is not the 2 public"
        in (missing.message)
    )


def test_checkpoint_with_wrong_root(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    cp = cps[6]  # tree size 700
    cps[6] = sign_checkpoint(
        tree_size=700, root_hash="f" * 64, last_entry_hash=cp["last_entry_hash"], private_key=KEY
    ).model_dump()

    report = verify(export, cps)

    # Entries up to the previous good checkpoint (600) are proven; 601..700 are not.
    assert_problem(report, "forged_checkpoint", 601)


def test_rewritten_and_rehashed_chain_is_caught_by_the_checkpoint(
    chain: list[AuditEntry], export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    # An attacker with database access edits entry 650 and recomputes every later hash.
    forged: list[dict[str, Any]] = export[:649]
    prev = chain[648].entry_hash
    for seq in range(650, N + 1):
        values = fields(seq)
        if seq == 650:
            values["outcome"] = "denied"
        entry = chain_entry(prev, values)
        forged.append(entry.to_export())
        prev = entry.entry_hash

    report = verify(forged, cps)

    assert_problem(report, "forged_checkpoint", 601)
    assert "Entries 601..700" in report.message


def test_entry_rehashed_alone_breaks_the_next_link(
    chain: list[AuditEntry], export: list[dict[str, Any]]
) -> None:
    values = fields(500)
    values["outcome"] = "denied"
    export[499] = chain_entry(chain[498].entry_hash, values).to_export()

    report = verify(export, [])

    assert_problem(report, "reordered", 500)
    assert "Entry 501 is not chained to entry 500" in report.message


def test_renumbered_head_is_caught() -> None:
    # Drop entry 1 and renumber the rest: entry "1" no longer starts from the genesis hash.
    entries = [e.to_export() for e in build(5, first_seq=2, prev="1" * 64)]
    for new_seq, item in enumerate(entries, start=1):
        item["seq"] = new_seq
        rebuilt = chain_entry(
            item["prev_hash"], {k: v for k, v in item.items() if k not in ("entry_hash", "prev_hash")}
        )
        item["entry_hash"] = rebuilt.entry_hash

    assert_problem(verify(entries, []), "reordered", 1)


def test_malformed_line(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    export[99] = {"type": "malformed", "line": 100}

    assert_problem(verify(export, cps), "malformed", 100)


def test_malformed_checkpoint(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    cps[2]["root_hash"] = "not hex"

    assert_problem(verify(export, cps), "malformed", None)


def test_raise_if_failed_carries_the_report(export: list[dict[str, Any]], cps: list[dict[str, Any]]) -> None:
    del export[5]
    report = verify(export, cps)

    with pytest.raises(AuditVerifyFailed) as info:
        report.raise_if_failed()

    assert info.value.code == "audit_verify_failed"
    assert info.value.report.first_bad_seq == 6


# --- export format --------------------------------------------------------------------------------


def test_export_round_trip_through_a_file(chain: list[AuditEntry], signed: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    lines = write_export(iter(chain), [Checkpoint.model_validate(c) for c in reversed(signed)], buffer)
    text = buffer.getvalue()

    assert lines == 1010
    first, *_ = text.splitlines()
    assert json.loads(first)["type"] == "checkpoint" and json.loads(first)["tree_size"] == 100
    assert json.loads(text.splitlines()[10]) == {**chain[0].to_export(), "type": "entry"}

    parsed = read_export(io.StringIO(text))
    report = verify_export(parsed.entries, parsed.checkpoints, PUBLIC)
    assert report.ok and report.entries_checked == 1000 and report.checkpoints_checked == 10


def test_checkpoints_may_trail_in_a_seekable_file(
    export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    lines = [canonical_json({**e, "type": "entry"}).decode() for e in export]
    lines += [canonical_json({**c, "type": "checkpoint"}).decode() for c in cps]

    parsed = read_export(io.StringIO("\n".join(lines) + "\n"))

    assert verify_export(parsed.entries, parsed.checkpoints, PUBLIC).ok


class Pipe(io.StringIO):
    def seekable(self) -> bool:
        return False


def test_export_from_a_pipe(chain: list[AuditEntry], signed: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    write_export(chain, signed, buffer)

    parsed = read_export(Pipe(buffer.getvalue()))

    assert verify_export(parsed.entries, parsed.checkpoints, PUBLIC).ok


def test_checkpoint_after_entries_in_a_pipe_is_malformed(
    export: list[dict[str, Any]], cps: list[dict[str, Any]]
) -> None:
    lines = [canonical_json({**e, "type": "entry"}).decode() for e in export[:100]]
    lines.append(canonical_json({**cps[0], "type": "checkpoint"}).decode())

    parsed = read_export(Pipe("\n".join(lines) + "\n"))

    assert_problem(verify_export(parsed.entries, parsed.checkpoints, PUBLIC), "malformed", 101)


def test_garbage_line_in_a_file_is_reported_where_it_stands(chain: list[AuditEntry]) -> None:
    buffer = io.StringIO()
    write_export(chain[:50], [], buffer)
    lines = buffer.getvalue().splitlines()
    lines[20] = '{"type": "entry", "seq": 21, "ts": '  # cut mid-write

    parsed = read_export(io.StringIO("\n".join(lines) + "\n"))

    assert_problem(verify_export(parsed.entries, parsed.checkpoints, PUBLIC), "malformed", 21)


def test_edit_in_an_exported_file_is_found(chain: list[AuditEntry], signed: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    write_export(chain, signed, buffer)
    text = buffer.getvalue().replace('"req-321"', '"req-999"', 1)

    parsed = read_export(io.StringIO(text))

    assert_problem(verify_export(parsed.entries, parsed.checkpoints, PUBLIC), "edited", 321)
