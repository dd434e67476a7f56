"""RFC 9162 consistency proofs: a smaller tree is proved a prefix of a larger one, and nothing else is."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from records.audit.merkle import EMPTY_ROOT, consistency_proof, merkle_root, verify_consistency

HASHES = [hashlib.sha256(f"entry {n}".encode()).hexdigest() for n in range(1, 34)]


def _root(size: int, hashes: list[str] = HASHES) -> str:
    return merkle_root(hashes[:size])


@pytest.mark.parametrize("second", range(1, 34))
def test_every_prefix_is_proved_consistent_with_every_larger_tree(second: int) -> None:
    for first in range(0, second + 1):
        proof = consistency_proof(first, HASHES[:second])
        assert verify_consistency(
            first=first, second=second, first_root=_root(first), second_root=_root(second), proof=proof
        ), (first, second)


@pytest.mark.parametrize(("first", "second"), [(1, 2), (3, 7), (4, 8), (6, 8), (7, 33), (16, 17), (27, 29)])
def test_a_proof_with_any_hash_changed_dropped_or_added_fails(first: int, second: int) -> None:
    proof = consistency_proof(first, HASHES[:second])
    args: dict[str, Any] = {
        "first": first,
        "second": second,
        "first_root": _root(first),
        "second_root": _root(second),
    }
    for i in range(len(proof)):
        changed = list(proof)
        changed[i] = "0" * 64
        assert not verify_consistency(**args, proof=changed)
        assert not verify_consistency(**args, proof=proof[:i] + proof[i + 1 :])
    assert not verify_consistency(**args, proof=[*proof, "0" * 64])
    assert not verify_consistency(**args, proof=[])


def test_a_rewritten_history_cannot_be_proved_an_extension() -> None:
    forked = list(HASHES)
    forked[11] = hashlib.sha256(b"rewritten").hexdigest()
    # The server proves the rewritten log's consistency honestly: it still fails against the old root.
    for first in (12, 20, 29):
        proof = consistency_proof(first, forked[:33])
        assert not verify_consistency(
            first=first, second=33, first_root=_root(first), second_root=_root(33, forked), proof=proof
        )


def test_a_rollback_or_a_different_root_of_the_same_size_is_not_consistent() -> None:
    assert verify_consistency(first=9, second=9, first_root=_root(9), second_root=_root(9), proof=[])
    assert not verify_consistency(first=9, second=9, first_root=_root(9), second_root=_root(8), proof=[])
    assert not verify_consistency(
        first=9, second=8, first_root=_root(9), second_root=_root(8), proof=consistency_proof(8, HASHES[:9])
    )
    assert verify_consistency(first=0, second=5, first_root=EMPTY_ROOT, second_root=_root(5), proof=[])
    assert not verify_consistency(first=3, second=5, first_root="zz", second_root=_root(5), proof=["00"])
