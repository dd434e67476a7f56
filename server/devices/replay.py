"""Replay protection for request proofs: each proof is accepted once while it is fresh.

A proof is acceptable only while its ``iat`` is within the freshness window of the server
clock, so remembering each accepted proof for twice that window is enough to refuse every
replay. What is remembered is the SHA-256 of the proof, never the proof itself.

Two caches implement :class:`ProofReplayCache`; ``build_replay_cache`` picks one from the
settings, as the signalling hub picks its bus and presence:

* :class:`InMemoryProofReplayCache` — the embedded default (one process). Bounded: when
  full it refuses new proofs (``rate_limited``) rather than forget a fresh one.
* :class:`RedisProofReplayCache` — when ``TELEMED_REDIS_URL`` is set, every node shares one
  memory: ``SET <prefix>:proof:<sha256> 1 NX PX <window>`` is atomic, so of two nodes
  presented the same proof at once exactly one accepts it. Keys expire with the window.
  If Redis cannot answer, the proof is refused with ``service_unavailable`` (503): a
  replay check that cannot be made is never taken as passed.

Callers (``verify_posture``, the records grant proof check) are synchronous and run in
worker threads, so the Redis cache uses the blocking client with short timeouts; the event
loop never waits on it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from device_policy.proof import DEFAULT_PROOF_MAX_SKEW
from server.errors import RateLimited, ServiceUnavailable

if TYPE_CHECKING:
    from server.settings import Settings

log = logging.getLogger("telemed.devices.replay")

DEFAULT_WINDOW = 2 * DEFAULT_PROOF_MAX_SKEW
DEFAULT_MAX_ENTRIES = 200_000
# A replay check sits on the path of every posture-bound request: answer within a second
# or refuse, rather than hold a worker thread while Redis is unreachable.
REDIS_TIMEOUT_S = 1.0
RETRY_AFTER_S = 5


class ProofReplayCache(Protocol):
    """Remembers the proofs accepted in the last few minutes."""

    def first_use(self, proof: str, *, now: datetime) -> bool:
        """True the first time ``proof`` is presented, False for a replay.

        Raises :class:`~server.errors.TelemedError` when the check cannot be made
        (``rate_limited`` when full, ``service_unavailable`` when the store is down).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def proof_digest(proof: str) -> bytes:
    """What a cache remembers of a proof."""
    return hashlib.sha256(proof.encode()).digest()


class InMemoryProofReplayCache:
    """One process's memory of recent proofs (thread-safe, bounded)."""

    def __init__(self, *, window: timedelta = DEFAULT_WINDOW, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._window = window
        self._max_entries = max_entries
        self._seen: OrderedDict[bytes, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, proof: str, *, now: datetime) -> bool:
        """True the first time ``proof`` is presented, False for a replay; RateLimited when full."""
        key = proof_digest(proof)
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

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._seen)


class RedisProofReplayCache:
    """Every node's memory of recent proofs, in Redis (keys ``<prefix>:proof:<sha256 hex>``).

    ``now`` is not used: a key lives ``window`` by Redis's clock from the first use.
    """

    def __init__(self, client: redis.Redis, *, prefix: str, window: timedelta = DEFAULT_WINDOW) -> None:
        self._redis = client
        self._prefix = prefix
        self._window_ms = int(window.total_seconds() * 1000)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, window: timedelta = DEFAULT_WINDOW) -> RedisProofReplayCache:
        """A cache over its own blocking client for ``url`` (connections opened on first use)."""
        client = redis.Redis.from_url(
            url,
            health_check_interval=30,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            # One retry, on connection errors only: it replaces a pooled connection Redis
            # closed (a restart). A timeout is not retried: the SET may have been applied,
            # and a retry would then refuse the proof's genuine first use.
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1, supported_errors=(RedisConnectionError,)),
        )
        return cls(client, prefix=prefix, window=window)

    def key(self, proof: str) -> str:
        """The Redis key that remembers ``proof``."""
        return f"{self._prefix}:proof:{proof_digest(proof).hex()}"

    def first_use(self, proof: str, *, now: datetime) -> bool:
        """True the first time any node sees ``proof``, False for a replay; ServiceUnavailable: no Redis."""
        try:
            created = self._redis.set(self.key(proof), b"1", nx=True, px=self._window_ms)
        except (RedisError, OSError) as exc:
            # The error type only (its message names the Redis server); never the proof.
            log.warning(
                "proof replay check failed: redis unavailable", extra={"error_type": type(exc).__name__}
            )
            raise ServiceUnavailable(
                "The request-proof replay check is unavailable; try again shortly",
                retry_after_s=RETRY_AFTER_S,
            ) from None
        return bool(created)

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


def build_replay_cache(settings: Settings) -> ProofReplayCache:
    """Redis (shared by the nodes) when ``TELEMED_REDIS_URL`` is set, in memory otherwise."""
    if settings.redis_url:
        return RedisProofReplayCache.from_url(settings.redis_url, prefix=settings.redis_prefix)
    return InMemoryProofReplayCache()
