"""Replay protection for request proofs: each proof is accepted once while it is fresh.

A proof is acceptable only while its ``iat`` is within the freshness window of the server
clock, so remembering each accepted proof for twice that window is enough to refuse every
replay. The memory is per process: with several server nodes, a proof replayed to another
node within the window is not caught here (the posture token it rides on still has to be
valid, bound to the same key, for the same method and URL).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from device_policy.proof import DEFAULT_PROOF_MAX_SKEW
from server.errors import RateLimited

DEFAULT_MAX_ENTRIES = 200_000


class ProofReplayCache:
    """Remembers the proofs seen in the last few minutes (thread-safe, bounded)."""

    def __init__(
        self,
        *,
        window: timedelta = 2 * DEFAULT_PROOF_MAX_SKEW,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._window = window
        self._max_entries = max_entries
        self._seen: OrderedDict[bytes, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, proof: str, *, now: datetime) -> bool:
        """True the first time ``proof`` is presented, False for a replay; RateLimited when full."""
        key = hashlib.sha256(proof.encode()).digest()
        with self._lock:
            self._forget_before(now - self._window)
            if key in self._seen:
                return False
            if len(self._seen) >= self._max_entries:
                # Refuse rather than forget a fresh proof: forgetting would reopen a replay.
                raise RateLimited(
                    "Too many posture-bound requests; try again shortly",
                    retry_after_s=int(self._window.total_seconds()),
                )
            self._seen[key] = now
            return True

    def _forget_before(self, cutoff: datetime) -> None:
        while self._seen:
            key, seen_at = next(iter(self._seen.items()))
            if seen_at >= cutoff:
                return
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
