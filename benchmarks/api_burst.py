"""A burst of concurrent ``GET /api/v1/me`` against a real uvicorn server: statuses, p50, p99.

Serves the app in a background thread (a fresh SQLite file, or with ``--database URL`` such as
``postgresql://postgres@127.0.0.1:5432/test`` a fresh database created beside it, migrated,
and dropped at the end), signs in one clinician, then
sends ``--clients`` requests at once, ``--rounds`` times. Every answer should be 200 or a
503 ``database_busy``; a 500 is a bug.

    .venv/bin/python benchmarks/api_burst.py --clients 64 --database postgresql://postgres@127.0.0.1:5432/test

Figures only, no assertions (tests/server/test_db_burst.py holds the assertions).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import uvicorn

from server.app import create_app
from server.db import session_scope, upgrade_database
from server.identity import service as identity
from server.identity.models import Role
from server.services import Services
from server.settings import Settings

PASSWORD = secrets.token_urlsafe(16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _round(base: str, token: str, clients: int) -> list[tuple[int, float]]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def one() -> tuple[int, float]:
            start = time.perf_counter()
            resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            return resp.status_code, time.perf_counter() - start

        return await asyncio.gather(*(one() for _ in range(clients)))


def main() -> None:
    """Run the burst and print statuses and latency percentiles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", default=None, help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="telemed-burst-"))
    url = f"sqlite:///{tmp / 'telemed.db'}"
    scratch = None
    if args.database:
        scratch = f"telemed_burst_{secrets.token_hex(4)}"
        with psycopg.connect(args.database, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{scratch}"')  # our own name, not input
        url = f"{args.database.rsplit('/', 1)[0]}/{scratch}"
    try:
        _run(args, tmp, url)
    finally:
        if scratch:
            with psycopg.connect(args.database, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def _run(args: argparse.Namespace, tmp: Path, url: str) -> None:
    upgrade_database(url)
    settings = Settings.model_validate(
        {
            "environment": "test",
            "secret_key": secrets.token_urlsafe(48),
            "data_dir": tmp / "data",
            "database_url": url,
            "log_json": False,
            "records_kek_dir": tmp / "data" / "keys" / "records",
            "audit_key_file": tmp / "data" / "keys" / "audit-ed25519.pem",
        }
    )
    services = Services.build(settings)
    username = f"burst-{secrets.token_hex(4)}"
    with session_scope(services.engine) as session:
        identity.create_user(
            session=session, username=username, password=PASSWORD, role=Role.CLINICIAN, display_name="Burst"
        )
    port = _free_port()
    app = create_app(settings, services=services)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    try:
        login = {"username": username, "password": PASSWORD}
        token = httpx.post(f"{base}/api/v1/auth/login", json=login).json()["access_token"]
        results: list[tuple[int, float]] = []
        for _ in range(args.rounds):
            results += asyncio.run(_round(base, token, args.clients))
    finally:
        server.should_exit = True
        thread.join(15)
        services.engine.dispose()
    latencies = sorted(d for _, d in results)
    cuts = statistics.quantiles(latencies, n=100)
    statuses = dict(sorted(Counter(s for s, _ in results).items()))
    sys.stdout.write(
        f"{args.clients} clients x {args.rounds} rounds on {url.split(':', 1)[0]}: statuses {statuses}; "
        f"p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms\n"
    )


if __name__ == "__main__":
    main()
