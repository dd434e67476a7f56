"""The throttle's counters behave the same in memory and in a real Redis (what several nodes share)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from server.security.throttle import (
    Backoff,
    InMemoryThrottleStore,
    LoginThrottle,
    LoginThrottled,
    RedisThrottleStore,
    ThrottleRules,
    ThrottleStore,
)
from tests.support.services import port_open, service_missing

RULE = Backoff(free=2, base=timedelta(seconds=2), max=timedelta(seconds=10), window=timedelta(minutes=1))
RULES = ThrottleRules(account_client=RULE, account=RULE, client=RULE, trusted_ttl=timedelta(days=1))


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[ThrottleStore]:
    if request.param == "memory":
        yield InMemoryThrottleStore()
        return
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"test-throttle-{secrets.token_hex(4)}"
    yield RedisThrottleStore(client, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def test_delays_start_after_the_free_attempts_and_double(store: ThrottleStore) -> None:
    keys = [("k", RULE)]
    assert store.reserve(keys, now=100.0) == 0
    assert store.reserve(keys, now=100.0) == 0
    assert store.reserve(keys, now=101.0) == pytest.approx(1.0)  # 2 s after the last attempt
    assert store.reserve(keys, now=102.0) == 0
    assert store.reserve(keys, now=103.0) == pytest.approx(3.0)  # then 4 s
    assert store.reserve(keys, now=106.0) == 0
    assert store.reserve(keys, now=106.0) == pytest.approx(8.0)
    assert store.reserve(keys, now=114.0) == 0
    assert store.reserve(keys, now=114.0) == pytest.approx(10.0)  # capped at max


def test_a_counter_is_forgotten_a_window_after_its_last_attempt() -> None:
    store = InMemoryThrottleStore()  # Redis expires keys by its own clock: the same rule, PEXPIRE
    keys = [("k", RULE)]
    for _ in range(3):
        store.reserve(keys, now=100.0)
    assert store.reserve(keys, now=100.0) > 0
    assert store.reserve(keys, now=100.0 + RULE.window.total_seconds()) == 0


def test_a_refused_attempt_counts_on_no_counter_and_undo_takes_one_back(store: ThrottleStore) -> None:
    busy, other = ("busy", RULE), ("other", RULE)
    store.reserve([busy], now=0.0)
    store.reserve([busy], now=0.0)
    assert store.reserve([busy, other], now=0.5) > 0
    assert store.reserve([other], now=0.5) == 0  # "other" was not counted by the refused attempt
    store.undo(["busy"])
    assert store.reserve([busy], now=0.5) == 0


def test_a_completed_sign_in_clears_and_trusts(store: ThrottleStore) -> None:
    clock = [50.0]
    throttle = LoginThrottle(store=store, rules=RULES, secret=b"s" * 32, clock=lambda: clock[0])
    throttle.begin(username="alice", client="10.0.0.1").failed()
    throttle.begin(username="alice", client="10.0.0.1").failed()
    with pytest.raises(LoginThrottled) as refused:
        throttle.begin(username="Alice ", client="10.0.0.1")  # the same account, typed differently
    assert refused.value.extra["retry_after_s"] == 2
    clock[0] += 2
    throttle.begin(username="alice", client="10.0.0.1").succeeded()
    assert store.marked(f"trusted:{throttle.account_hash('alice')}|10.0.0.1", now=clock[0])
    throttle.begin(username="alice", client="10.0.0.1").failed()  # counted from zero again
