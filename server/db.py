"""Database engine, sessions and the migration runner.

SQLite (a file under the data directory) is the embedded default; PostgreSQL is used
through ``TELEMED_DATABASE_URL``. Schema changes go only through Alembic migrations,
applied by ``telemed db upgrade`` and at ``telemed serve`` start.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlmodel import Session, create_engine

# The records library owns the timestamp column type; the server's tables use the same one.
from records.dbtypes import UTCDateTime
from server.errors import DATABASE_BUSY_RETRY_AFTER_S, DatabaseBusy

__all__ = [
    "UTCDateTime",
    "make_engine",
    "request_slot",
    "session_scope",
    "upgrade_database",
    "utcnow",
]

#: connections each process keeps open, and how many more it may open under load
POOL_SIZE = 10
POOL_OVERFLOW = 20
#: connections requests leave free for work outside them (signalling, key reloads, readiness)
POOL_RESERVE = 5
#: how long a blocking checkout may wait before it fails (a request never waits on it: see below)
POOL_TIMEOUT_S = 10
#: how long a request may queue for a connection before it is answered 503 ``database_busy``
REQUEST_QUEUE_TIMEOUT_S = 10.0
#: how long opening a PostgreSQL connection may take: a database host that drops packets
#: (rather than refusing) answers 503 ``database_unavailable`` after this, not after the
#: operating system's TCP timeout of minutes
CONNECT_TIMEOUT_S = 5


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


def make_engine(url: str) -> Engine:
    """Create the engine for a database URL, with SQLite made safe for a threaded server."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        file_based = bool(path) and path != ":memory:"
        pool: dict[str, Any] = (
            {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_timeout": POOL_TIMEOUT_S}
            if file_based
            else {}
        )
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # pre_ping: a connection the database dropped (restart, failover) is replaced on checkout,
    # so the first request after an outage succeeds instead of failing on a dead connection.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


class RequestGate:
    """At most ``slots`` requests hold a database session at once; the others queue in the event loop.

    Why: a request's session keeps its connection from the first query until the response,
    across several hops through the thread pool (each sync dependency and the route run in
    a worker thread). Without a bound, a burst filled every worker thread with requests
    blocked on the connection pool while the requests holding the connections waited for a
    thread to finish in: nothing moved until the pool timeout, then every waiter failed.
    Queuing here costs no thread and no connection, and a request that has a slot is sure
    to get a connection at once.
    """

    def __init__(self, slots: int, *, timeout_s: float = REQUEST_QUEUE_TIMEOUT_S) -> None:
        self.slots = slots
        self.timeout_s = timeout_s
        # One semaphore per event loop: a server has one; tests start several, one after another.
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the block; 503 ``database_busy`` if none frees up within the timeout."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.slots)
        try:
            async with asyncio.timeout(self.timeout_s):
                await semaphore.acquire()
        except TimeoutError:
            raise DatabaseBusy(
                "Every database connection is busy; retry shortly", retry_after_s=DATABASE_BUSY_RETRY_AFTER_S
            ) from None
        try:
            yield
        finally:
            semaphore.release()


_GATES: weakref.WeakKeyDictionary[Engine, RequestGate] = weakref.WeakKeyDictionary()


def request_gate(engine: Engine) -> RequestGate:
    """The request gate of ``engine``, sized to its connection pool less a reserve."""
    gate = _GATES.get(engine)
    if gate is None:
        pool = engine.pool
        size = pool.size() if hasattr(pool, "size") else POOL_SIZE
        overflow = max(int(getattr(pool, "_max_overflow", 0)), 0)
        capacity = size + overflow
        gate = _GATES[engine] = RequestGate(max(capacity - min(POOL_RESERVE, capacity // 4), 1))
    return gate


def request_slot(engine: Engine) -> AbstractAsyncContextManager[None]:
    """``async with request_slot(engine):`` — hold one of the engine's request slots."""
    return request_gate(engine).slot()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("server") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade_database(url: str) -> None:
    """Apply every migration not yet applied (all branch heads)."""
    command.upgrade(alembic_config(url), "heads")
