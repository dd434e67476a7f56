"""Request proofs are single use across every node: in memory for one process, Redis for several."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from server.app import create_app
from server.db import utcnow
from server.devices.replay import (
    InMemoryProofReplayCache,
    RedisProofReplayCache,
    build_replay_cache,
)
from server.errors import RateLimited, ServiceUnavailable
from server.services import Services
from tests.conftest import make_settings
from tests.server.devices.helpers import admin_headers, attest, enrol, proof_headers
from tests.server.records_fixtures import build_ward, claims_of, problem
from tests.support.services import free_port

ME = "http://testserver/api/v1/devices/me/posture"
WINDOW_MS = 120_000  # twice the 60 s freshness window


def _compliant(client: TestClient, services: Services) -> tuple[Any, str, str]:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    body = attest(client, "laptop-01", key).json()
    return key, body["posture_token"], body["token_jti"]


def _closed_port_cache() -> RedisProofReplayCache:
    return RedisProofReplayCache.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix="telemed-test-down")


# --- in memory (the embedded default) ---------------------------------------------------------


def test_in_memory_a_proof_is_accepted_once_within_the_window_and_forgotten_after() -> None:
    cache = InMemoryProofReplayCache(window=timedelta(seconds=120))
    now = utcnow()
    assert cache.first_use("proof-a", now=now) is True
    assert cache.first_use("proof-a", now=now + timedelta(seconds=119)) is False
    assert cache.first_use("proof-b", now=now) is True
    assert cache.first_use("proof-a", now=now + timedelta(seconds=121)) is True
    assert len(cache) == 1  # proof-b went with the window, proof-a is back


def test_in_memory_when_full_it_refuses_rather_than_forget_a_fresh_proof() -> None:
    cache = InMemoryProofReplayCache(window=timedelta(seconds=120), max_entries=2)
    now = utcnow()
    assert cache.first_use("p1", now=now) and cache.first_use("p2", now=now)
    with pytest.raises(RateLimited) as refused:
        cache.first_use("p3", now=now)
    assert refused.value.code == "rate_limited" and refused.value.extra == {"retry_after_s": 120}
    assert cache.first_use("p1", now=now) is False  # still remembered
    assert cache.first_use("p3", now=now + timedelta(seconds=121)) is True


def test_the_settings_choose_the_cache(sqlite_url: str, tmp_path: Path) -> None:
    embedded = build_replay_cache(make_settings(sqlite_url, tmp_path / "a"))
    assert isinstance(embedded, InMemoryProofReplayCache)
    shared = build_replay_cache(
        make_settings(sqlite_url, tmp_path / "b", redis_url="redis://127.0.0.1:6379/0", redis_prefix="ward-7")
    )
    assert isinstance(shared, RedisProofReplayCache)
    key = shared.key("a proof")
    assert key.startswith("ward-7:proof:") and "a proof" not in key and len(key) == len("ward-7:proof:") + 64
    shared.close()


# --- Redis down: refused, never let through -----------------------------------------------------


def test_redis_unreachable_refuses_the_proof_with_service_unavailable(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    key, token, jti = _compliant(client, services)
    services.proof_replay = _closed_port_cache()
    headers = proof_headers(key, token, jti, url=ME)
    with caplog.at_level(logging.WARNING, logger="telemed.devices.replay"):
        resp = client.get(ME, headers=headers)
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "5"
    body = problem(resp)
    assert body == {
        "type": "urn:telemed:problem:service_unavailable",
        "title": "A service the server needs is unavailable",
        "status": 503,
        "detail": "The request-proof replay check is unavailable; try again shortly",
        "code": "service_unavailable",
        "retry_after_s": 5,
    }
    warnings = [r for r in caplog.records if r.name == "telemed.devices.replay"]
    assert [(r.levelname, getattr(r, "error_type", None)) for r in warnings] == [
        ("WARNING", "ConnectionError")
    ]
    for secret in (headers["X-Posture-Proof"], token):
        assert secret not in caplog.text and secret not in resp.text


def test_redis_unreachable_refuses_record_grants_and_their_use(
    client: TestClient, services: Services
) -> None:
    ward = build_ward(client, services)
    grant = ward.grant()["grant"]
    services.proof_replay = _closed_port_cache()
    issued = ward.request_grant()
    assert (issued.status_code, issued.json()["code"]) == (503, "service_unavailable")
    used = ward.use("GET", f"/api/v1/records/patients/{ward.patient_a}/documents", grant)
    assert (used.status_code, used.json()["code"]) == (503, "service_unavailable")
    # Only the grant issued while Redis answered exists.
    assert [e["outcome"] for e in ward.audit(action="grant.issue")] == ["allowed"]


# --- the real Redis: one memory for every node --------------------------------------------------


@contextmanager
def _nodes(sqlite_url: str, tmp_path: Path, overrides: dict[str, Any], count: int) -> Iterator[list[Any]]:
    """``count`` server apps over one database and one Redis: (client, services) each."""
    settings = make_settings(sqlite_url, tmp_path / "data", **overrides)
    with ExitStack() as stack:
        nodes = []
        for _ in range(count):
            services = Services.build(settings)
            stack.callback(services.engine.dispose)
            nodes.append((stack.enter_context(TestClient(create_app(settings, services=services))), services))
        yield nodes


@pytest.mark.redis
def test_a_proof_used_on_one_node_is_refused_on_the_other(
    sqlite_url: str, tmp_path: Path, redis_overrides: dict[str, Any]
) -> None:
    with _nodes(sqlite_url, tmp_path, redis_overrides, 2) as [(node_a, services_a), (node_b, _)]:
        key, token, jti = _compliant(node_a, services_a)
        first = proof_headers(key, token, jti, url=ME)
        assert node_a.get(ME, headers=first).status_code == 200
        replayed = node_b.get(ME, headers=first)
        assert (replayed.status_code, replayed.json()["code"]) == (401, "proof_replayed")

        second = proof_headers(key, token, jti, url=ME)
        assert node_b.get(ME, headers=second).status_code == 200
        assert node_a.get(ME, headers=second).json()["code"] == "proof_replayed"
        assert node_b.get(ME, headers=second).json()["code"] == "proof_replayed"

        client = redis.Redis.from_url(redis_overrides["redis_url"])
        try:
            keys = sorted(client.scan_iter(match=f"{redis_overrides['redis_prefix']}:proof:*"))
            assert len(keys) == 2
            assert all(0 < client.pttl(k) <= WINDOW_MS for k in keys)
        finally:
            client.close()


@pytest.mark.redis
def test_a_record_grant_proof_used_on_one_node_is_refused_on_the_other(
    sqlite_url: str, tmp_path: Path, redis_overrides: dict[str, Any]
) -> None:
    with _nodes(sqlite_url, tmp_path, redis_overrides, 2) as [(node_a, services_a), (node_b, _)]:
        ward = build_ward(node_a, services_a)
        grant = ward.grant()["grant"]
        path = f"/api/v1/records/patients/{ward.patient_a}/documents"
        headers = {
            **ward.host,
            "X-Record-Grant": grant,
            "X-Posture-Proof": ward.laptop.proof("GET", path, claims_of(grant)["jti"]),
        }
        assert node_a.get(path, headers=headers).status_code == 200
        replayed = node_b.get(path, headers=headers)
        assert (replayed.status_code, replayed.json()["code"]) == (401, "grant_invalid")
        assert "already been used" in replayed.json()["detail"]


@pytest.mark.redis
def test_redis_keys_expire_with_the_window(redis_overrides: dict[str, Any]) -> None:
    cache = RedisProofReplayCache.from_url(
        redis_overrides["redis_url"],
        prefix=redis_overrides["redis_prefix"],
        window=timedelta(milliseconds=300),
    )
    client = redis.Redis.from_url(redis_overrides["redis_url"])
    try:
        now = utcnow()
        assert cache.first_use("short-lived", now=now) is True
        assert cache.first_use("short-lived", now=now) is False
        assert 0 < client.pttl(cache.key("short-lived")) <= 300
        deadline = time.monotonic() + 5
        while client.exists(cache.key("short-lived")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.exists(cache.key("short-lived"))
        assert cache.first_use("short-lived", now=utcnow()) is True
    finally:
        cache.close()
        client.close()


@pytest.mark.redis
def test_nodes_racing_on_one_proof_accept_it_exactly_once(redis_overrides: dict[str, Any]) -> None:
    caches = [
        RedisProofReplayCache.from_url(redis_overrides["redis_url"], prefix=redis_overrides["redis_prefix"])
        for _ in range(4)
    ]
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def present(cache: RedisProofReplayCache) -> None:
        barrier.wait()
        results.append(cache.first_use("raced", now=utcnow()))

    threads = [threading.Thread(target=present, args=(caches[i % 4],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for cache in caches:
        cache.close()
    assert sorted(results) == [False] * 15 + [True]


class _Proxy:
    """A TCP relay to Redis that can be cut (every connection dropped) and brought back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        for sock in [self._listener, *self._sockets]:
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        self._sockets, self._listener = [], None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self._sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass


@pytest.mark.redis
def test_losing_redis_refuses_until_it_is_back(redis_overrides: dict[str, Any]) -> None:
    url = redis.connection.parse_url(redis_overrides["redis_url"])
    proxy = _Proxy((url.get("host", "127.0.0.1"), int(url.get("port", 6379))))
    proxy.start()
    cache = RedisProofReplayCache.from_url(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_overrides["redis_prefix"]
    )
    try:
        assert cache.first_use("before", now=utcnow()) is True
        proxy.cut()
        with pytest.raises(ServiceUnavailable) as refused:
            cache.first_use("during", now=utcnow())
        assert refused.value.code == "service_unavailable" and refused.value.status == 503
        proxy.start()
        # The pooled connection Redis dropped is replaced: no refusal once Redis is back.
        assert cache.first_use("after", now=utcnow()) is True
        assert cache.first_use("before", now=utcnow()) is False
    finally:
        proxy.cut()
        cache.close()
