"""RFC 6962 Merkle tree hashing over audit entry hashes, computed incrementally.

``leaf = SHA-256(0x00 || entry_hash)``, ``node = SHA-256(0x01 || left || right)``; the tree
over n leaves splits at the largest power of two below n; the empty tree is SHA-256("").
The accumulator keeps only the O(log n) roots of the perfect subtrees (the "frontier").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = ["EMPTY_ROOT", "MerkleAccumulator", "leaf_hash", "merkle_root", "node_hash"]

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
