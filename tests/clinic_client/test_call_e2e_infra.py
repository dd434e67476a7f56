"""End to end on real infrastructure: relay-only media through coturn, and two server processes on Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from server.db import upgrade_database
from server.services import Services
from tests.conftest import PG_ADMIN_URL, TEST_SECRET, make_settings
from tests.support.coturn import CoturnServer, running_coturn
from tests.support.live_server import ServerProcess
from tests.support.services import port_open, service_missing
from tests.support.signalling_scene import Scene, SceneFactory, build_scene_on

from .test_call_e2e import Call, media_flows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    with running_coturn(Path(tmp_path_factory.mktemp("coturn"))) as server:
        yield server


@pytest.mark.coturn
async def test_prison_endpoints_use_only_the_relay_with_credentials_from_the_server(
    make_scene: SceneFactory,
    coturn: CoturnServer,
) -> None:
    scene = make_scene(turn_urls=[coturn.url], turn_secret=coturn.secret.decode())
    call = Call(scene)
    try:
        host = await call.host()
        room = await call.room()
        for party in (host, room):
            welcome = party.session.client.welcome
            assert welcome is not None
            assert welcome.ice.policy == "relay"
            assert welcome.ice.servers[0].urls == (coturn.url,)
            assert welcome.ice.servers[0].username is not None
            assert welcome.ice.servers[0].username.endswith(party.id.replace(":", "."))
        await call.admit(host, room)
        await media_flows([host, room])
        for me, other in ((host, room), (room, host)):
            assert me.session.call is not None
            peer = me.session.call.peer(other.id)
            assert peer is not None
            pair = peer.selected_pair()
            assert pair is not None and pair.local_type == "relay"
            address, port = pair.local_address
            assert address == coturn.host and coturn.min_port <= port <= coturn.max_port
            stats = (await me.session.stats())[other.id]
            assert stats.local_candidate_type == "relay"
    finally:
        await call.close()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database the server processes share; dropped after."""
    if not port_open("127.0.0.1", 5432):
        service_missing("PostgreSQL on 127.0.0.1:5432")
    name = f"telemed_sig_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # our own name, not input
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    upgrade_database(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.redis
@pytest.mark.postgres
async def test_host_and_room_on_two_server_processes_sharing_redis(
    postgres_database: str,
    redis_overrides: dict[str, Any],
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    settings = make_settings(postgres_database, data, **redis_overrides)
    env = {
        "TELEMED_ENVIRONMENT": "test",
        "TELEMED_SECRET_KEY": TEST_SECRET,
        "TELEMED_DATABASE_URL": postgres_database,
        "TELEMED_DATA_DIR": str(data),
        "TELEMED_REDIS_URL": redis_overrides["redis_url"],
        "TELEMED_REDIS_PREFIX": redis_overrides["redis_prefix"],
        "TELEMED_LOG_JSON": "false",
        "TELEMED_LOG_LEVEL": "WARNING",
    }
    for name in ("records_kek_dir", "audit_key_file"):
        value = getattr(settings, name, None)
        if value is not None:
            env[f"TELEMED_{name.upper()}"] = str(value)
    with (
        ServerProcess(env, workdir=tmp_path / "a", name="node-a") as node_a,
        ServerProcess(env, workdir=tmp_path / "b", name="node-b") as node_b,
    ):
        services = Services.build(settings)
        try:
            scene: Scene = build_scene_on([services], [node_a, node_b])  # type: ignore[list-item]
        finally:
            services.engine.dispose()
        call = Call(scene, server_url=node_a.base_url)
        try:
            host = await call.host(server_url=node_a.base_url)
            room = await call.room(server_url=node_b.base_url)
            await call.admit(host, room)
            await media_flows([host, room])
        finally:
            await call.close()
