"""A private PostgreSQL cluster for a test that stops and restarts its database.

The shared server on :5432 must never be stopped (other tests use it), so a fault test gets
its own cluster: ``initdb`` into a temporary directory, ``pg_ctl start`` on a free port on
127.0.0.1, a ``telemed`` database. As root the binaries run as the ``postgres`` user (the
server refuses to run as root), in a directory that user owns.

:meth:`PrivatePostgres.crash` kills the postmaster the way a crash or a power cut does
(``pg_ctl stop -m immediate``: no shutdown checkpoint, the next start replays the WAL);
:meth:`PrivatePostgres.start` brings it back on the same port with the same data.

Under ``CI=true`` missing binaries fail the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.support.services import free_port, service_missing

PG_BIN = Path(os.environ.get("TELEMED_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "telemed"


class PrivatePostgres:
    """One cluster: its data directory, port and the URL of its ``telemed`` database."""

    def __init__(self, root: Path, *, port: int, as_user: str | None) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port
        self._as_user = as_user

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/telemed``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        command = list(args)
        if self._as_user is not None:
            command = ["runuser", "-u", self._as_user, "--", *command]
        done = subprocess.run(  # noqa: S603 - fixed argv of our own
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n"
                f"log:\n{self.logs()[-2000:]}"
            )

    def logs(self) -> str:
        """What the server has logged so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def init(self) -> None:
        """``initdb`` (trust on loopback only, like the shared test server)."""
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    def start(self) -> None:
        """Start on this cluster's port and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def crash(self) -> None:
        """Stop at once, as a crash would (``-m immediate``): the next start recovers from the WAL."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop cleanly if running (ignores a cluster that is already down)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self) -> None:
        """Create the ``telemed`` database."""
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')  # fixed name, not input


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running private cluster with an empty ``telemed`` database, removed afterwards."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        service_missing(f"PostgreSQL server binaries in {PG_BIN}")
    as_user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: as root that is a 0700 directory the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="telemed-pg-"))
    if as_user is not None:
        shutil.chown(root, user=as_user, group=as_user)
    cluster = PrivatePostgres(root, port=free_port(), as_user=as_user)
    try:
        cluster.init()
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
