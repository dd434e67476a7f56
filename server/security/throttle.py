"""Sign-in throttling: growing delays per (account, client), per account and per client.

Failed sign-ins slow the guesser down instead of locking the account (OWASP Authentication
Cheat Sheet: a hard lock lets anyone lock a named clinician out). Three counters are kept;
an attempt is refused (``429 login_throttled`` with ``Retry-After``) while any of them says
wait:

========================  ======================================  ===========================
counter                   counts                                  default free attempts
========================  ======================================  ===========================
account + client          attempts at this username from this IP  5
account                   attempts at this username from any IP   20
client                    attempts at any username from this IP   20
========================  ======================================  ===========================

Once a counter holds ``free`` attempts, the next one must wait ``base`` after the last,
then ``2·base``, ``4·base``… up to ``max`` (defaults 2 s and 15 min). A counter is forgotten
``window`` (1 h) after its last attempt. An attempt is counted *before* the password is
checked, so guesses sent in parallel each count; a right password takes its count back,
and a completed sign-in also clears the account + client counter and marks that client as
*trusted* for the account for ``trusted_ttl`` (30 days). A trusted client skips the account
and client counters: a stranger elsewhere guessing at the clinician's account, or spraying
usernames from the clinician's shared address, does not stop the clinician.

Counters are keyed by an HMAC of the typed username (so unknown and known usernames behave
alike, and nothing typed — perhaps a password in the wrong box — is kept in clear) and the
client's IP address. They live in one process's memory, or in Redis (``TELEMED_REDIS_URL``)
so every node shares them; if Redis cannot answer, sign-in is refused with 503.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

import redis
from redis.exceptions import RedisError

from server.errors import RateLimited, ServiceUnavailable

if TYPE_CHECKING:
    from server.settings import Settings

REDIS_TIMEOUT_S = 1.0
MAX_MEMORY_ENTRIES = 200_000


class LoginThrottled(RateLimited):
    code, title = "login_throttled", "Too many sign-in attempts"


@dataclass(frozen=True)
class Backoff:
    """When a counter starts to make callers wait, and how long."""

    free: int
    base: timedelta
    max: timedelta
    window: timedelta

    def delay_s(self, count: int) -> float:
        """Seconds the next attempt must wait after the last one, with ``count`` already counted."""
        if count < self.free:
            return 0.0
        exponent = min(count - self.free, 40)
        return float(min(self.base.total_seconds() * 2.0**exponent, self.max.total_seconds()))


@dataclass(frozen=True)
class ThrottleRules:
    """The three counters' rules and how long a successful client stays trusted."""

    account_client: Backoff
    account: Backoff
    client: Backoff
    trusted_ttl: timedelta


class ThrottleStore(Protocol):
    """Counters of attempts (count and time of the last), shared by whoever signs people in."""

    def reserve(self, keys: Sequence[tuple[str, Backoff]], *, now: float) -> float:
        """Seconds to wait if any counter says so (nothing counted), else 0 and count one on each."""
        ...

    def undo(self, keys: Sequence[str]) -> None:
        """Take one count back from each counter (the attempt turned out not to be a guess)."""
        ...

    def clear(self, key: str) -> None:
        """Forget a counter."""
        ...

    def mark(self, key: str, *, ttl: timedelta, now: float) -> None:
        """Remember ``key`` for ``ttl``."""
        ...

    def marked(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is remembered."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class InMemoryThrottleStore:
    """One process's counters (thread-safe; expired counters are dropped when it grows)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, float, float]] = {}  # key -> (count, last, expires)
        self._marks: dict[str, float] = {}

    def _get(self, key: str, now: float) -> tuple[int, float]:
        count, last, expires = self._counters.get(key, (0, 0.0, 0.0))
        return (count, last) if expires > now else (0, 0.0)

    def reserve(self, keys: Sequence[tuple[str, Backoff]], *, now: float) -> float:
        """Seconds to wait if any counter says so (nothing counted), else 0 and count one on each."""
        with self._lock:
            wait = 0.0
            for key, rule in keys:
                count, last = self._get(key, now)
                wait = max(wait, last + rule.delay_s(count) - now)
            if wait > 0:
                return wait
            if len(self._counters) > MAX_MEMORY_ENTRIES:
                self._counters = {k: v for k, v in self._counters.items() if v[2] > now}
            for key, rule in keys:
                count, _ = self._get(key, now)
                self._counters[key] = (count + 1, now, now + rule.window.total_seconds())
            return 0.0

    def undo(self, keys: Sequence[str]) -> None:
        """Take one count back from each counter."""
        with self._lock:
            for key in keys:
                if key in self._counters:
                    count, last, expires = self._counters[key]
                    self._counters[key] = (max(count - 1, 0), last, expires)

    def clear(self, key: str) -> None:
        """Forget a counter."""
        with self._lock:
            self._counters.pop(key, None)

    def mark(self, key: str, *, ttl: timedelta, now: float) -> None:
        """Remember ``key`` for ``ttl``."""
        with self._lock:
            if len(self._marks) > MAX_MEMORY_ENTRIES:
                self._marks = {k: v for k, v in self._marks.items() if v > now}
            self._marks[key] = now + ttl.total_seconds()

    def marked(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is remembered."""
        with self._lock:
            return self._marks.get(key, 0.0) > now

    def close(self) -> None:
        """Nothing to release."""


# Atomic over all keys: check every counter, and count on all of them only if none says wait.
_RESERVE = """
local now = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local o = 1 + (i - 1) * 4
  local free, base, cap = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local v = redis.call('HMGET', key, 'c', 'l')
  local c, l = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if c >= free then
    local d = math.min(base * 2 ^ math.min(c - free, 40), cap)
    if l + d - now > wait then wait = l + d - now end
  end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'c', 1)
  redis.call('HSET', key, 'l', ARGV[1])
  redis.call('PEXPIRE', key, ARGV[1 + (i - 1) * 4 + 4])
end
return '0'
"""
_UNDO = """
for _, key in ipairs(KEYS) do
  local c = tonumber(redis.call('HGET', key, 'c'))
  if c and c > 0 then redis.call('HINCRBY', key, 'c', -1) end
end
return 0
"""


class RedisThrottleStore:
    """Counters every node shares, as Redis hashes ``<prefix>:login:<kind>:<key>`` (``c``, ``l``)."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._undo = client.register_script(_UNDO)

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisThrottleStore:
        """Connect with short timeouts: a sign-in must not hang on an unreachable Redis."""
        client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        return cls(client, prefix=prefix)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:login:{key}"

    def _unavailable(self, exc: RedisError) -> ServiceUnavailable:
        # A throttle that cannot be checked is never taken as passed.
        return ServiceUnavailable("Sign-in is unavailable for a moment; try again", retry_after_s=5)

    def reserve(self, keys: Sequence[tuple[str, Backoff]], *, now: float) -> float:
        """Seconds to wait if any counter says so (nothing counted), else 0 and count one on each."""
        args: list[str] = [repr(now)]
        for _key, rule in keys:
            args += [
                str(rule.free),
                repr(rule.base.total_seconds()),
                repr(rule.max.total_seconds()),
                str(int(rule.window.total_seconds() * 1000)),
            ]
        try:
            answer = self._reserve(keys=[self._key(k) for k, _ in keys], args=args)
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return float(answer.decode() if isinstance(answer, bytes) else answer)

    def undo(self, keys: Sequence[str]) -> None:
        """Take one count back from each counter."""
        try:
            self._undo(keys=[self._key(k) for k in keys], args=[])
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def clear(self, key: str) -> None:
        """Forget a counter."""
        try:
            self._client.delete(self._key(key))
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def mark(self, key: str, *, ttl: timedelta, now: float) -> None:
        """Remember ``key`` for ``ttl``."""
        try:
            self._client.set(self._key(key), b"1", px=int(ttl.total_seconds() * 1000))
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def marked(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is remembered."""
        try:
            return bool(self._client.exists(self._key(key)))
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Release connections."""
        self._client.close()


class LoginAttempt:
    """One counted sign-in attempt; say how it ended (a failure needs nothing more)."""

    def __init__(self, throttle: LoginThrottle, *, pair: str, counted: list[str], trust: str) -> None:
        self._throttle = throttle
        self._pair = pair
        self._counted = counted
        self._trust = trust
        self.account_key = throttle.account_label(pair)

    def failed(self) -> None:
        """A wrong password or code: the count stays."""

    def passed_first_factor(self) -> None:
        """The password was right but a second step follows: take the count back, clear nothing."""
        self._throttle.store.undo(self._counted)

    def succeeded(self) -> None:
        """Signed in: take the count back, clear this client's failures and trust it for the account."""
        store = self._throttle.store
        store.undo(self._counted)
        store.clear(self._pair)
        store.mark(self._trust, ttl=self._throttle.rules.trusted_ttl, now=self._throttle.clock())


class LoginThrottle:
    """Counts sign-in attempts and refuses the ones that come too fast (``login_throttled``)."""

    def __init__(
        self,
        *,
        store: ThrottleStore,
        rules: ThrottleRules,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rules = rules
        self._secret = hashlib.sha256(b"telemed-login-throttle:" + secret).digest()
        self.clock = clock

    def account_hash(self, username: str) -> str:
        """A keyed hash of the typed username: the same for the same name, useless without the secret."""
        name = username.strip().lower().encode()
        return hmac.new(self._secret, name, hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def account_label(pair: str) -> str:
        """The account part of a counter key, for audit entries (``acct:<hash>``)."""
        return pair.split("|", 1)[0].removeprefix("pair:")

    def begin(self, *, username: str, client: str | None) -> LoginAttempt:
        """Count an attempt at ``username`` from ``client`` (IP), or raise ``LoginThrottled``."""
        account = self.account_hash(username)
        ip = client or "unknown"
        pair = f"pair:{account}|{ip}"
        trust = f"trusted:{account}|{ip}"
        now = self.clock()
        keys: list[tuple[str, Backoff]] = [(pair, self.rules.account_client)]
        if not self.store.marked(trust, now=now):
            keys += [(f"acct:{account}", self.rules.account), (f"client:{ip}", self.rules.client)]
        wait = self.store.reserve(keys, now=now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise LoginThrottled(
                f"Too many sign-in attempts; try again in {seconds} seconds", retry_after_s=seconds
            )
        return LoginAttempt(self, pair=pair, counted=[k for k, _ in keys], trust=trust)


def rules_from(settings: Settings) -> ThrottleRules:
    """The throttle rules the settings describe."""

    def backoff(free: int) -> Backoff:
        return Backoff(
            free=free,
            base=settings.login_backoff_base,
            max=settings.login_backoff_max,
            window=settings.login_throttle_window,
        )

    return ThrottleRules(
        account_client=backoff(settings.login_free_attempts_per_account_client),
        account=backoff(settings.login_free_attempts_per_account),
        client=backoff(settings.login_free_attempts_per_client),
        trusted_ttl=settings.login_trusted_client_ttl,
    )


def build_login_throttle(settings: Settings) -> LoginThrottle:
    """The throttle for ``settings``: in Redis when ``TELEMED_REDIS_URL`` is set, else in memory."""
    store: ThrottleStore
    if settings.redis_url:
        store = RedisThrottleStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    else:
        store = InMemoryThrottleStore()
    return LoginThrottle(
        store=store, rules=rules_from(settings), secret=settings.secret_key.get_secret_value().encode()
    )
