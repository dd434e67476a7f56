"""What both load runs share: a scratch PostgreSQL database, ``telemed serve`` as a child
process, the product's own services in this process (to book what a run uses), the child's
memory, the file-descriptor limit, percentiles and the pool gauges on ``/metrics``.
"""

from __future__ import annotations

import os
import re
import resource
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from server.cli import prepare_database
from server.db import upgrade_database
from server.services import Services
from server.settings import Settings
from tests.support.live_server import ServerProcess

PG_ADMIN_URL = os.environ.get("TELEMED_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def scratch_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A fresh, migrated, uniquely named database beside ``admin_url``; dropped afterwards."""
    name = f"telemed_load_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # our own name, not input
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """``TELEMED_*`` for a development server on ``database_url`` with its data in ``workdir``."""
    return {
        "TELEMED_ENVIRONMENT": "development",
        "TELEMED_DATA_DIR": str(workdir / "data"),
        "TELEMED_DATABASE_URL": database_url,
        "TELEMED_LOG_LEVEL": "WARNING",
        "TELEMED_LOG_JSON": "false",
        **extra,
    }


def local_services(env: dict[str, str]) -> Services:
    """The product's services on the server's database and keys (to book and sign what a run uses)."""
    values = {key.removeprefix("TELEMED_").lower(): value for key, value in env.items()}
    settings = Settings.model_validate(values)
    prepare_database(settings)  # what `telemed serve` does first: migrations and a signing key
    services = Services.build(settings)
    services.keys.load()
    return services


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it) towards ``wanted``; the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS from /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return int(found.group(1)) / 1024


def percentile(values: list[float], p: float) -> float:
    """The ``p`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def median(values: list[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else float("nan")


def pool_gauges(base_url: str) -> dict[str, float]:
    """``telemed_db_pool_*`` from the server's /metrics (checked_out, checked_in, overflow, size)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^telemed_db_pool_(\w+) (\S+)$", text, re.MULTILINE)
    }


def settled_pool(base_url: str, baseline: float, timeout: float = 10.0) -> dict[str, float]:
    """The pool gauges once checked-out connections are back to ``baseline`` (or when ``timeout`` ends)."""
    deadline = time.monotonic() + timeout
    while True:
        gauges = pool_gauges(base_url)
        if gauges.get("checked_out", -1) <= baseline or time.monotonic() > deadline:
            return gauges
        time.sleep(0.2)


def database_connections(admin_url: str, database_url: str) -> dict[str, int]:
    """Connections to the run's database by state, from pg_stat_activity."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity WHERE datname = %s GROUP BY 1",
            (name,),
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


@dataclass
class MemorySamples:
    """The child's RSS over time: ``(seconds since start, MB, phase)``."""

    samples: list[tuple[float, float, str]] = field(default_factory=list)

    def add(self, at: float, mb: float, phase: str) -> None:
        self.samples.append((at, mb, phase))

    def of(self, phase: str) -> list[float]:
        return [mb for _, mb, p in self.samples if p == phase]


def start_server(env: dict[str, str], workdir: Path) -> ServerProcess:
    """``telemed serve`` in a child process with ``env``; returns once /readyz answers."""
    return ServerProcess(env, workdir=workdir, name="load-server").start(timeout=60)
