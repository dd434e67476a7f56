"""Per-connection limits: message size, message rate (token bucket) and an error budget.

All checks are O(1) arithmetic on the connection's own counters: no I/O, no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

# Our own size check answers with an ``error`` and keeps the socket; the transport limit
# (uvicorn ``ws_max_size``) sits above it and closes with 1009 for anything bigger.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
WS_MAX_FRAME_BYTES = 2 * DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class SignallingLimits:
    """Everything the hub enforces per connection and per participant."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    rate_per_s: float = 50.0
    burst: int = 200
    # Bad or over-rate messages a client may send before the socket is closed (4429);
    # the budget refills at ``error_refill_per_s``.
    error_budget: int = 20
    error_refill_per_s: float = 0.5
    hello_timeout: timedelta = timedelta(seconds=5)
    resume_grace: timedelta = timedelta(seconds=30)
    # Messages waiting to be written to one socket; a client that stops reading is closed.
    send_queue: int = 1024
    # How long before its posture token expires a participant is suspended (clock leeway).
    posture_leeway: timedelta = timedelta(seconds=0)

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024 or self.max_message_bytes > WS_MAX_FRAME_BYTES:
            raise ValueError(f"max_message_bytes must be between 1024 and {WS_MAX_FRAME_BYTES}")
        if self.rate_per_s <= 0 or self.burst < 1 or self.error_budget < 1:
            raise ValueError("rates, bursts and budgets must be positive")
        if self.hello_timeout <= timedelta(0) or self.resume_grace < timedelta(0):
            raise ValueError("the hello timeout must be positive and the resume grace not negative")


class TokenBucket:
    """Allows ``burst`` events at once and ``rate`` per second on average."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; False (and nothing spent) otherwise."""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if tokens < cost:
            self._tokens = tokens
            return False
        self._tokens = tokens - cost
        return True

    @property
    def tokens(self) -> float:
        """Tokens available right now."""
        return min(self.burst, self._tokens + (self._clock() - self._last) * self.rate)
