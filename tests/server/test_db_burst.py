"""A burst of requests against a real server on PostgreSQL: each is answered 200 or a
documented 503 ``database_busy``, never a 500, and never left hanging on the pool.

The pool is made small (5 connections) so that 64 clients are a burst on any machine; the
server's thread pool (40) is then larger than the pool, the shape that used to stall.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine

from server.app import create_app
from server.db import normalise_url, request_gate
from server.identity.models import Role
from server.services import Services
from tests.conftest import _truncate_all, make_settings
from tests.server.factories import PASSWORD, add_user
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.postgres

CLIENTS = 64


@pytest.fixture
def small_pool(postgres_url: str) -> Iterator[Engine]:
    """An engine with 2 + 3 connections whose checkouts give up after 2 s (the old failure, fast)."""
    engine = create_engine(normalise_url(postgres_url), pool_size=2, max_overflow=3, pool_timeout=2)
    # A fresh data directory needs an empty database (its audit trail is signed with that key).
    _truncate_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def server(postgres_url: str, small_pool: Engine, tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(postgres_url, tmp_path / "data")
    services = Services.build(settings, engine=small_pool)
    with LiveServer(create_app(settings, services=services)) as live:
        yield live


def _token(server: LiveServer) -> str:
    username = f"burst-{secrets.token_hex(4)}"
    add_user(server.app.state.services, username, Role.CLINICIAN)
    login = {"username": username, "password": PASSWORD}
    resp = httpx.post(f"{server.base_url}/api/v1/auth/login", json=login)
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


async def _burst(base_url: str, token: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        headers = {"Authorization": f"Bearer {token}"}
        return await asyncio.gather(*(client.get("/api/v1/me", headers=headers) for _ in range(n)))


def _assert_answered_well(responses: list[httpx.Response]) -> Counter[int]:
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    for resp in responses:
        if resp.status_code == 503:
            assert resp.headers["content-type"] == "application/problem+json"
            assert resp.json()["code"] == "database_busy"
            assert int(resp.headers["retry-after"]) >= 1
    return statuses


async def test_a_burst_on_a_small_pool_is_queued_not_failed(server: LiveServer, small_pool: Engine) -> None:
    token = _token(server)
    statuses = _assert_answered_well(await _burst(server.base_url, token, CLIENTS))
    # The queue (10 s) is far longer than 64 short requests need: every one gets through.
    assert statuses == Counter({200: CLIENTS})


async def test_a_request_that_cannot_get_a_slot_in_time_is_a_fast_503(
    server: LiveServer, small_pool: Engine
) -> None:
    token = _token(server)
    gate = request_gate(small_pool)
    gate.timeout_s = 0.2
    # The events are awaited on the server's loop, so they are made there.
    release = await server.run(_make_event())
    held = await server.run(_make_event())
    held_count: list[int] = []

    async def hold_every_slot() -> None:
        async def hold_one() -> None:
            async with gate.slot():
                held_count.append(1)
                if len(held_count) == gate.slots:
                    held.set()
                await release.wait()

        await asyncio.gather(*(hold_one() for _ in range(gate.slots)))

    holder = asyncio.ensure_future(server.run(hold_every_slot()))
    await server.run(held.wait())
    try:
        responses = await _burst(server.base_url, token, 4)
        assert _assert_answered_well(responses) == Counter({503: 4})
    finally:
        await server.run(_set(release))
        await holder
    # Once the slots are free again the server answers normally.
    assert _assert_answered_well(await _burst(server.base_url, token, 4)) == Counter({200: 4})


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


async def _set(event: asyncio.Event) -> None:
    event.set()
