"""RFC 6962 Merkle tree hashing over audit entry hashes, computed incrementally.

``leaf = SHA-256(0x00 || entry_hash)``, ``node = SHA-256(0x01 || left || right)``; the tree
over n leaves splits at the largest power of two below n; the empty tree is SHA-256("").
The accumulator keeps only the O(log n) roots of the perfect subtrees (the "frontier").

Consistency proofs (RFC 9162 section 2.1.4, the same as RFC 6962 section 2.1.2) show that
the tree of ``first`` leaves is a prefix of the tree of ``second`` leaves: a witness that
holds only the two roots checks them with :func:`verify_consistency`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "MerkleAccumulator",
    "consistency_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "verify_consistency",
]

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(entry_hash: bytes) -> bytes:
    """Hash of one leaf (an entry hash), domain-separated with 0x00."""
    return hashlib.sha256(b"\x00" + entry_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node, domain-separated with 0x01."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _as_bytes(entry_hash: bytes | str) -> bytes:
    raw = bytes.fromhex(entry_hash) if isinstance(entry_hash, str) else entry_hash
    if len(raw) != 32:
        raise ValueError("entry hashes are 32 bytes")
    return raw


class MerkleAccumulator:
    """Appends leaves one at a time and yields the RFC 6962 root at any size."""

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        # (height, hash) of perfect subtrees, left to right, strictly decreasing heights.
        self._frontier: list[tuple[int, bytes]] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    def append(self, entry_hash: bytes | str) -> None:
        """Add the next entry hash (32 bytes or 64 hex characters)."""
        height, current = 0, leaf_hash(_as_bytes(entry_hash))
        while self._frontier and self._frontier[-1][0] == height:
            _, left = self._frontier.pop()
            current = node_hash(left, current)
            height += 1
        self._frontier.append((height, current))
        self._size += 1

    def root(self) -> str:
        """The tree head over all appended leaves, as hex."""
        if not self._frontier:
            return EMPTY_ROOT
        current = self._frontier[-1][1]
        for _, left in reversed(self._frontier[:-1]):
            current = node_hash(left, current)
        return current.hex()

    def frontier(self) -> list[str]:
        """Hex hashes of the perfect subtrees; with ``size`` this resumes the accumulator."""
        return [digest.hex() for _, digest in self._frontier]

    @classmethod
    def resume(cls, size: int, frontier: Sequence[str]) -> MerkleAccumulator:
        """Rebuild an accumulator from a stored ``size`` and ``frontier()``."""
        if size < 0:
            raise ValueError("tree size cannot be negative")
        heights = [bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]
        if len(heights) != len(frontier):
            raise ValueError("frontier does not match the tree size")
        acc = cls()
        acc._frontier = [(h, _as_bytes(d)) for h, d in zip(heights, frontier, strict=True)]
        acc._size = size
        return acc


def merkle_root(entry_hashes: Iterable[bytes | str]) -> str:
    """RFC 6962 tree head over ``entry_hashes`` in order, as hex."""
    acc = MerkleAccumulator()
    for entry_hash in entry_hashes:
        acc.append(entry_hash)
    return acc.root()


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves (at least one)."""
    if len(leaves) == 1:
        return leaves[0]
    k = _largest_power_of_two_below(len(leaves))
    return node_hash(_subtree_root(leaves[:k]), _subtree_root(leaves[k:]))


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    # RFC 9162 section 2.1.4.1, SUBPROOF(m, D[n], b).
    n = len(leaves)
    if m == n:
        return [] if complete else [_subtree_root(leaves)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _subtree_root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _subtree_root(leaves[:k])]


def consistency_proof(first: int, entry_hashes: Sequence[bytes | str]) -> list[str]:
    """The proof that the first ``first`` leaves' tree is a prefix of the tree over all of them.

    Empty when ``first`` is 0 or equals the number of leaves (nothing to prove).
    """
    second = len(entry_hashes)
    if not 0 <= first <= second:
        raise ValueError("first must be between 0 and the number of leaves")
    if first in (0, second):
        return []
    leaves = [leaf_hash(_as_bytes(h)) for h in entry_hashes]
    return [digest.hex() for digest in _subproof(first, leaves, True)]


def verify_consistency(
    *, first: int, second: int, first_root: str, second_root: str, proof: Sequence[str]
) -> bool:
    """True when ``proof`` shows the tree (first, first_root) is a prefix of (second, second_root).

    RFC 9162 section 2.1.4.2. A tree is consistent with itself only with an empty proof
    and the same root; the empty tree is a prefix of every tree.
    """
    if not 0 <= first <= second:
        return False
    try:
        path = [bytes.fromhex(p) for p in proof]
        old, new = bytes.fromhex(first_root), bytes.fromhex(second_root)
    except ValueError:
        return False
    if any(len(p) != 32 for p in path) or len(old) != 32 or len(new) != 32:
        return False
    if first == second:
        return not path and old == new
    if first == 0:
        return not path and old == bytes.fromhex(EMPTY_ROOT)
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [old, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old and sr == new and sn == 0
