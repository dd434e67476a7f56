"""Audit entries, the hash chain, the Merkle tree head and signed checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from records.audit.chain import (
    GENESIS_HASH,
    AuditEntry,
    AuditFields,
    canonical_json,
    chain_entry,
    format_ts,
)
from records.audit.checkpoint import (
    Checkpoint,
    audit_key_id,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from records.audit.merkle import EMPTY_ROOT, MerkleAccumulator, leaf_hash, merkle_root, node_hash

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def fields(seq: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "seq": seq,
        "ts": format_ts(T0 + timedelta(seconds=seq)),
        "actor_id": "user-42",
        "actor_role": "clinician",
        "authority_jti": f"grant-{seq}",
        "patient_id": "A1234BC",
        "data": {"document_ids": [f"doc-{seq}"]},
        "action": "document.read",
        "outcome": "allowed",
        "purpose_of_use": "TREAT",
        "device_id": "laptop-7",
        "ip": "10.1.2.3",
        "establishment": "HMP Example",
        "request_id": f"req-{seq}",
        "consultation_id": "cons-1",
        "detail": {"bytes": 1024},
    }
    values.update(overrides)
    return values


def build(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        entry = chain_entry(prev, fields(seq))
        entries.append(entry)
        prev = entry.entry_hash
    return entries


# --- chain --------------------------------------------------------------------------------------


def test_entry_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    entry = chain_entry(GENESIS_HASH, fields(1))
    payload = {k: v for k, v in entry.to_export().items() if k != "entry_hash"}

    expected = hashlib.sha256(bytes(32) + canonical_json(payload)).hexdigest()

    assert entry.entry_hash == expected
    assert entry.prev_hash == GENESIS_HASH == "0" * 64
    assert payload["prev_hash"] == GENESIS_HASH
    assert entry.is_intact()


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()


def test_chain_links_each_entry_to_the_previous() -> None:
    entries = build(5)

    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.prev_hash == before.entry_hash
    assert len({e.entry_hash for e in entries}) == 5


def test_null_optional_fields_are_left_out_of_the_hash() -> None:
    minimal = chain_entry(
        GENESIS_HASH,
        {"seq": 1, "ts": format_ts(T0), "actor_id": "u", "actor_role": "admin",
         "action": "audit.export", "outcome": "success"},
    )  # fmt: skip

    assert "patient_id" not in minimal.to_export()
    # An exporter that writes the nulls out yields the same entry.
    with_nulls = AuditEntry.model_validate({**minimal.to_export(), "patient_id": None})
    assert with_nulls.is_intact()


def test_editing_any_field_breaks_the_hash() -> None:
    entry = chain_entry(GENESIS_HASH, fields(1))
    for key, value in [("patient_id", "Z9999ZZ"), ("outcome", "denied"), ("detail", {"bytes": 1})]:
        edited = AuditEntry.model_validate({**entry.to_export(), key: value})
        assert not edited.is_intact(), key


def test_fields_model_can_be_passed_in() -> None:
    entry = chain_entry(GENESIS_HASH, AuditFields.model_validate(fields(1)))

    assert entry == chain_entry(GENESIS_HASH, fields(1)).model_copy(update={"entry_hash": entry.entry_hash})
    assert entry.is_intact()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"authority_jti": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}, "authority_jti"),
        ({"detail": {"note": "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}}, "detail"),
        ({"detail": {"score": 0.5}}, "detail"),
        ({"detail": {"big": 2**60}}, "detail"),
        ({"detail": {"blob": "x" * 5000}}, "detail"),
        ({"ts": "2025-03-01 09:00:00"}, "ts"),
        ({"ts": "2025-03-01T09:00:00+01:00"}, "ts"),
        ({"ts": "2025-03-01T09:00:00Z"}, "ts"),
        ({"ts": "2025-02-30T09:00:00.000000Z"}, "ts"),
        ({"outcome": "maybe"}, "outcome"),
        ({"action": "Document Read"}, "action"),
        ({"seq": 0}, "seq"),
        ({"seq": "5"}, "seq"),
        ({"purpose_of_use": "treat"}, "purpose_of_use"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_fields_are_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        chain_entry(GENESIS_HASH, {**fields(1), **overrides})

    assert field in str(info.value)


def test_format_ts_is_utc_with_microseconds() -> None:
    paris = timezone(timedelta(hours=1))

    assert format_ts(datetime(2025, 3, 1, 10, 0, tzinfo=paris)) == "2025-03-01T09:00:00.000000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2025, 3, 1, 10, 0))


def test_chain_entry_refuses_a_bad_prev_hash() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        chain_entry("abc", fields(1))


# --- Merkle ---------------------------------------------------------------------------------------


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written recursively straight from the definition."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def test_merkle_root_matches_rfc6962_for_all_small_sizes() -> None:
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(70)]
    acc = MerkleAccumulator()

    assert acc.root() == EMPTY_ROOT == reference_mth([]).hex()
    for n in range(1, 71):
        acc.append(leaves[n - 1])
        assert acc.root() == reference_mth(leaves[:n]).hex(), n
    assert merkle_root(leaf.hex() for leaf in leaves) == reference_mth(leaves).hex()


def test_merkle_domain_separation() -> None:
    a, b = bytes(32), bytes([1]) * 32

    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b)).hex()
    # A leaf can never pass for an interior node.
    assert merkle_root([a, b]) != merkle_root([node_hash(leaf_hash(a), leaf_hash(b))])


def test_accumulator_resumes_from_its_frontier() -> None:
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(45)]
    acc = MerkleAccumulator()
    for leaf in leaves[:29]:
        acc.append(leaf)

    resumed = MerkleAccumulator.resume(acc.size, acc.frontier())
    for leaf in leaves[29:]:
        resumed.append(leaf)

    assert resumed.root() == merkle_root(leaves)
    with pytest.raises(ValueError, match="frontier"):
        MerkleAccumulator.resume(29, acc.frontier()[:-1])


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audit_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_checkpoint_signs_canonical_json_of_other_fields(audit_key: Ed25519PrivateKey) -> None:
    entries = build(10)
    root = merkle_root(e.entry_hash for e in entries)

    cp = sign_checkpoint(
        tree_size=10, root_hash=root, last_entry_hash=entries[-1].entry_hash, private_key=audit_key
    )

    assert cp.key_id == audit_key_id(audit_key.public_key())
    message = canonical_json({k: v for k, v in cp.model_dump().items() if k != "signature"})
    audit_key.public_key().verify(base64.b64decode(cp.signature), message)
    assert verify_checkpoint_signature(cp, audit_key.public_key())
    assert verify_checkpoint_signature(
        cp, [Ed25519PrivateKey.generate().public_key(), audit_key.public_key()]
    )


@pytest.mark.parametrize(
    "change",
    [{"tree_size": 11}, {"root_hash": "1" * 64}, {"last_entry_hash": "2" * 64},
     {"ts": "2030-01-01T00:00:00.000000Z"}],
    ids=lambda c: next(iter(c)),
)  # fmt: skip
def test_any_change_to_a_checkpoint_breaks_its_signature(
    change: dict[str, Any], audit_key: Ed25519PrivateKey
) -> None:
    cp = sign_checkpoint(tree_size=10, root_hash="a" * 64, last_entry_hash="b" * 64, private_key=audit_key)

    assert not verify_checkpoint_signature(cp.model_copy(update=change), audit_key.public_key())


def test_checkpoint_from_another_key_is_refused(audit_key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    cp = sign_checkpoint(tree_size=0, root_hash=EMPTY_ROOT, last_entry_hash=GENESIS_HASH, private_key=other)

    assert not verify_checkpoint_signature(cp, audit_key.public_key())
    # Even when the forger claims the real key id.
    claimed = cp.model_copy(update={"key_id": audit_key_id(audit_key.public_key())})
    assert not verify_checkpoint_signature(claimed, audit_key.public_key())


def test_checkpoint_model_rejects_bad_signature_encoding() -> None:
    with pytest.raises(ValidationError, match="64 bytes"):
        Checkpoint.model_validate(
            {"tree_size": 1, "root_hash": "a" * 64, "last_entry_hash": "b" * 64,
             "ts": "2025-03-01T09:00:00.000000Z", "key_id": "k",
             "signature": base64.b64encode(b"short").decode()}
        )  # fmt: skip


def test_checkpoint_json_round_trip(audit_key: Ed25519PrivateKey) -> None:
    cp = sign_checkpoint(tree_size=3, root_hash="c" * 64, last_entry_hash="d" * 64, private_key=audit_key)

    again = Checkpoint.model_validate(json.loads(json.dumps(cp.model_dump())))

    assert verify_checkpoint_signature(again, audit_key.public_key())
