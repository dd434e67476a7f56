"""Sign-in throttling: strangers' failures slow them down but never lock a clinician out,
unknown and known usernames get the same answers, and every attempt is audited."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from records.audit.chain import AuditEntry
from records.audit.log import iter_entries
from server.db import session_scope
from server.services import Services
from tests.server.factories import PASSWORD, add_user

LOGIN = "/api/v1/auth/login"
WRONG = "wrong password!"


class Clock:
    """The throttle's clock, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(services: Services) -> Clock:
    fake = Clock()
    services.login_throttle.clock = fake
    return fake


@pytest.fixture
def from_ip(app: FastAPI, client: TestClient) -> Iterator[Callable[[str], TestClient]]:
    """Clients of the (started) app that come from other addresses."""
    made: list[TestClient] = []

    def make(ip: str) -> TestClient:
        other = TestClient(app, client=(ip, 40000))
        made.append(other)
        return other

    yield make
    for other in made:
        other.close()


def attempt(client: TestClient, username: str, password: str = WRONG) -> httpx.Response:
    return client.post(LOGIN, json={"username": username, "password": password})


def comparable(resp: httpx.Response) -> tuple[int, dict[str, Any], str | None]:
    body = {k: v for k, v in resp.json().items() if k != "request_id"}
    return resp.status_code, body, resp.headers.get("retry-after")


def login_entries(services: Services) -> list[AuditEntry]:
    with session_scope(services.engine) as session:
        return [e for e in iter_entries(session=session) if e.action == "auth.login"]


def test_failures_slow_the_guesser_with_growing_delays_not_a_lock(
    client: TestClient, services: Services, clock: Clock
) -> None:
    add_user(services, "alice")
    free = services.settings.login_free_attempts_per_account_client
    for _ in range(free):
        assert attempt(client, "alice").json()["code"] == "invalid_credentials"
    throttled = attempt(client, "alice", PASSWORD)  # even the right password waits its turn
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/problem+json"
    assert throttled.json()["code"] == "login_throttled"
    assert throttled.headers["retry-after"] == "2" and throttled.json()["retry_after_s"] == 2
    assert PASSWORD not in throttled.text
    clock.now += 2
    assert attempt(client, "alice").status_code == 401
    assert attempt(client, "alice").headers["retry-after"] == "4"  # the delay doubles
    clock.now += 4
    assert attempt(client, "alice", PASSWORD).status_code == 200
    # A completed sign-in clears this client's count: the next typo is just a typo.
    assert attempt(client, "alice").status_code == 401
    assert attempt(client, "alice", PASSWORD).status_code == 200


def test_a_stranger_elsewhere_cannot_lock_the_clinician_out(
    client: TestClient, services: Services, clock: Clock, from_ip: Callable[[str], TestClient]
) -> None:
    add_user(services, "alice")
    assert attempt(client, "alice", PASSWORD).status_code == 200  # her usual address
    # Guesses from many addresses reach the per-account limit...
    strangers = [from_ip(f"203.0.113.{n}") for n in range(1, 12)]
    for stranger in strangers:
        for _ in range(3):
            attempt(stranger, "alice")
    blocked = attempt(from_ip("198.51.100.7"), "alice", PASSWORD)
    assert blocked.status_code == 429 and blocked.json()["code"] == "login_throttled"
    # ...but not for the clinician at an address she has signed in from.
    assert attempt(client, "alice", PASSWORD).status_code == 200


def test_one_address_trying_many_usernames_is_throttled(
    client: TestClient, services: Services, clock: Clock, from_ip: Callable[[str], TestClient]
) -> None:
    add_user(services, "alice")
    assert attempt(client, "alice", PASSWORD).status_code == 200
    sprayer = from_ip("192.0.2.50")
    answers = [attempt(sprayer, f"user{n:02d}").status_code for n in range(30)]
    assert 429 in answers
    assert answers.index(429) == services.settings.login_free_attempts_per_client
    # Another address, and the clinician's own, are not affected.
    assert attempt(from_ip("192.0.2.51"), "nobody").status_code == 401
    assert attempt(client, "alice", PASSWORD).status_code == 200


def test_unknown_and_known_usernames_get_identical_answers(
    client: TestClient, services: Services, clock: Clock
) -> None:
    add_user(services, "alice")
    free = services.settings.login_free_attempts_per_account_client
    known = [attempt(client, "alice") for _ in range(free + 1)]
    unknown = [attempt(client, "alicf") for _ in range(free + 1)]
    assert [comparable(r) for r in known] == [comparable(r) for r in unknown]
    assert [r.status_code for r in known] == [401] * free + [429]
    assert known[-1].status_code == 429


def test_guesses_sent_in_parallel_each_count(client: TestClient, services: Services, clock: Clock) -> None:
    add_user(services, "alice")
    free = services.settings.login_free_attempts_per_account_client
    start = threading.Barrier(3 * free)
    answers: list[httpx.Response] = []

    def one() -> None:
        start.wait()
        answers.append(attempt(client, "alice"))

    threads = [threading.Thread(target=one) for _ in range(3 * free)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = [r.json()["code"] for r in answers]
    assert codes.count("invalid_credentials") == free
    assert codes.count("login_throttled") == 2 * free
    assert attempt(client, "alice", PASSWORD).status_code == 429


def test_every_sign_in_is_audited_without_the_typed_text(
    client: TestClient, services: Services, clock: Clock
) -> None:
    alice = add_user(services, "alice")
    ok = attempt(client, "alice", PASSWORD)
    wrong = attempt(client, "alice", "hunter2-typed-in-the-wrong-box")
    unknown = attempt(client, "my-secret-password-1")
    for _ in range(services.settings.login_free_attempts_per_account_client):
        attempt(client, "alice")
    throttled = attempt(client, "alice")
    assert throttled.status_code == 429
    entries = login_entries(services)
    by_request = {e.request_id: e for e in entries}
    seen = {
        name: by_request[resp.headers["x-request-id"]]
        for name, resp in (("ok", ok), ("wrong", wrong), ("unknown", unknown), ("throttled", throttled))
    }
    assert (seen["ok"].outcome, seen["ok"].actor_id, seen["ok"].actor_role) == ("success", alice, "clinician")
    assert (seen["wrong"].outcome, seen["wrong"].actor_id) == ("failure", alice)
    assert seen["wrong"].detail["reason"] == "wrong_password"
    assert (seen["unknown"].outcome, seen["unknown"].actor_id) == ("failure", None)
    assert seen["unknown"].detail["reason"] == "unknown_user"
    assert (seen["throttled"].outcome, seen["throttled"].actor_id) == ("denied", alice)
    assert seen["throttled"].detail["reason"] == "login_throttled"
    for entry in seen.values():
        assert entry.ip == "testclient"
        text = json.dumps(entry.to_export())
        for typed in (PASSWORD, "hunter2-typed-in-the-wrong-box", "my-secret-password-1", '"alice"'):
            assert typed not in text
    # The same typed name always gets the same keyed hash, so attempts can be correlated.
    assert seen["wrong"].detail["account_key"] == seen["ok"].detail["account_key"]
    assert seen["unknown"].detail["account_key"] != seen["ok"].detail["account_key"]
