"""Shared plumbing for fault tests: services of the test's own that it may kill, and a clinic on
several ``telemed serve`` processes.

Never stop or reconfigure the shared PostgreSQL (:5432) or Redis (:6379): a fault on a
service is done to a private instance started here. Under ``CI=true`` a missing binary fails
the test (:func:`tests.support.services.service_missing`).

* :class:`RedisServer` / ``private_redis`` — ``redis-server`` on a free port, without
  persistence (like a production cache restart: it comes back empty); ``kill()`` then
  ``start()`` restarts it on the same port.
* :class:`KillableServer` — :class:`~tests.support.live_server.ServerProcess` that can be
  SIGKILLed (no graceful shutdown) and started again on the same port.
* ``make_cluster`` — a fresh PostgreSQL database, a private Redis, N server processes, and
  the signalling scene (users, patient, devices, a consultation booked now) built on them.

The signalling scene fixtures (``make_scene``, ``scene``, ``redis_overrides``…) of
:mod:`tests.support.signalling_scene` are available to every test here.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import psycopg
import pytest

from server.db import upgrade_database
from server.identity.models import Role
from server.services import Services
from server.settings import Settings
from tests.conftest import PG_ADMIN_URL, TEST_SECRET, make_settings
from tests.server.factories import PASSWORD, add_user
from tests.support.live_server import ServerProcess
from tests.support.services import free_port, port_open, service_missing
from tests.support.signalling_scene import (  # noqa: F401 - fixtures for every fault test
    Scene,
    build_scene_on,
    make_scene,
    migrated_template,
    redis_overrides,
    scene,
    scene_db_url,
)

READY_S = 15.0


class RedisServer:
    """A private ``redis-server`` (no RDB, no AOF) on 127.0.0.1:<free port>, killable and restartable."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.log_path = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = READY_S) -> Self:
        """Start (again, on the same port) and wait until it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("the redis-server binary")
            raise AssertionError("unreachable")  # service_missing fails or skips
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port, timeout=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL (no shutdown, nothing saved) and reap."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self) -> None:
        """Stop for good (teardown)."""
        self.kill()
        self._process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill and restart."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


class KillableServer(ServerProcess):
    """``telemed serve`` in a child process that a test may SIGKILL and start again on its port."""

    def kill(self) -> None:
        """SIGKILL: no shutdown, sockets are cut, nothing is said to anyone."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self, timeout: float = 30.0) -> Self:
        """Start again on the same port (after :meth:`kill`); the old log is kept alongside."""
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(f".{int(time.time() * 1000)}.log"))
        return self.start(timeout)


@pytest.fixture
def fault_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (on the shared server) for this test; dropped after."""
    if not port_open("127.0.0.1", 5432):
        service_missing("PostgreSQL on 127.0.0.1:5432")
    name = f"telemed_fault_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # our own name, not input
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    upgrade_database(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The ``TELEMED_*`` environment that makes ``telemed serve`` run with ``settings``."""
    env = {
        "TELEMED_ENVIRONMENT": settings.environment.value,
        "TELEMED_SECRET_KEY": TEST_SECRET,
        "TELEMED_DATABASE_URL": str(settings.database_url),
        "TELEMED_DATA_DIR": str(settings.data_dir),
        "TELEMED_LOG_JSON": "false",
        "TELEMED_LOG_LEVEL": "WARNING",
    }
    if settings.redis_url:
        env["TELEMED_REDIS_URL"] = settings.redis_url
        env["TELEMED_REDIS_PREFIX"] = settings.redis_prefix
    for name in ("records_kek_dir", "audit_key_file"):
        value = getattr(settings, name, None)
        if value is not None:
            env[f"TELEMED_{name.upper()}"] = str(value)
    return {**env, **extra}


@dataclass
class Cluster:
    """A clinic on several server processes sharing one database and one (private) Redis."""

    scene: Scene
    nodes: list[KillableServer]
    redis: RedisServer
    settings: Settings
    services: Services
    admin_password: str = PASSWORD
    extra: dict[str, Any] = field(default_factory=dict)

    def admin_headers(self, node: int = 0) -> dict[str, str]:
        """Sign in as the admin on a node; the bearer header."""
        resp = httpx.post(
            f"{self.nodes[node].base_url}/api/v1/auth/login",
            json={"username": "root", "password": self.admin_password},
            timeout=10.0,
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def readiness(self, node: int) -> httpx.Response:
        """``GET /readyz`` on a node."""
        return httpx.get(f"{self.nodes[node].base_url}/readyz", timeout=5.0)


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
async def make_cluster(
    fault_database: str, private_redis: RedisServer, tmp_path: Path
) -> AsyncIterator[ClusterFactory]:
    """``make_cluster(nodes=2, **env)``: start the processes (``env``: more settings), build the scene."""
    started: list[KillableServer] = []
    built: list[Services] = []
    scenes: list[Scene] = []

    def factory(nodes: int = 2, **env: str) -> Cluster:
        settings = make_settings(
            fault_database,
            tmp_path / "data",
            redis_url=private_redis.url,
            redis_prefix=f"telemed-fault-{secrets.token_hex(4)}",
        )
        services = Services.build(settings)
        built.append(services)
        processes: list[KillableServer] = []
        for index in range(nodes):
            node = KillableServer(
                server_env(settings, **env), workdir=tmp_path / f"node-{index}", name="serve"
            )
            started.append(node)
            processes.append(node.start())
        built_scene = build_scene_on([services], processes)  # type: ignore[arg-type]
        add_user(services, "root", role=Role.ADMIN)
        scenes.append(built_scene)
        return Cluster(
            scene=built_scene, nodes=processes, redis=private_redis, settings=settings, services=services
        )

    yield factory
    for built_scene in scenes:
        await built_scene.close_all()
    for node in started:
        node.stop()
    for services in built:
        services.engine.dispose()
