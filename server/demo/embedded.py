"""The demo's server: ``telemed serve`` on embedded defaults, in a thread of this process.

SQLite in the data directory, the in-process signalling bus, no TURN, development mode
(which accepts simulated posture facts). The settings are given explicitly rather than
read from ``TELEMED_*`` variables, so a shell configured for a real deployment (a
PostgreSQL URL, Redis, a policy file) cannot leak into the demo.

uvicorn runs on its own event loop in a background thread, listening on a socket bound
here to a free loopback port — the clients of the story talk to it over real HTTP and
WebSocket connections, exactly as they would to a remote server.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

from server.app import create_app
from server.db import upgrade_database
from server.services import Services
from server.settings import DEV_SECRET, Environment, Settings
from server.signalling.limits import WS_MAX_FRAME_BYTES

LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The embedded server did not become ready."""


def demo_settings(data_dir: Path, *, port: int) -> Settings:
    """Embedded defaults for a server on ``127.0.0.1:port`` keeping its data in ``data_dir``."""
    return Settings(
        environment=Environment.DEVELOPMENT,
        data_dir=data_dir,
        database_url=None,
        redis_url=None,
        secret_key=SecretStr(DEV_SECRET),
        host=LOOPBACK,
        port=port,
        public_url=f"http://{LOOPBACK}:{port}",
        policy_file=None,
        records_kek_dir=None,
        audit_key_file=None,
        turn_urls=[],
        turn_secret=None,
        log_level="INFO",
        log_json=True,
    )


def cli_environment(settings: Settings) -> dict[str, str]:
    """The environment under which ``telemed …`` commands act on the demo's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
    env.update(
        {
            "TELEMED_ENVIRONMENT": settings.environment.value,
            "TELEMED_DATA_DIR": str(settings.data_dir),
            "TELEMED_PUBLIC_URL": settings.public_url,
            "TELEMED_LOG_LEVEL": "WARNING",
        }
    )
    return env


def telemed_command(*args: str) -> list[str]:
    """argv running the ``telemed`` CLI with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-c", "from server.cli import main; main()", *args]


class EmbeddedServer:
    """The server of the demo: migrate, then serve in a background thread until stopped."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        # Bound now and handed to uvicorn: the port is ours, no race with another process.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((LOOPBACK, 0))
        self.port: int = self._socket.getsockname()[1]
        self.settings = demo_settings(data_dir, port=self.port)
        self.services: Services | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self.settings.public_url

    def start(self, timeout: float = 60.0) -> None:
        """Migrate the database, start uvicorn and wait until ``/readyz`` answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_database(self.settings.resolved_database_url)
        self.services = Services.build(self.settings)
        config = uvicorn.Config(
            create_app(self.settings, services=self.services),
            log_config=None,
            lifespan="on",
            ws_max_size=WS_MAX_FRAME_BYTES,  # above the hub's own limit, as `telemed serve` does
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="telemed-demo-server", daemon=True)
        self._thread.start()
        self._wait_ready(timeout)

    def _serve(self) -> None:
        assert self._server is not None  # noqa: S101 - set before the thread starts
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                why = f": {type(self._error).__name__}: {self._error}" if self._error else ""
                raise ServerStartError(f"the server stopped during startup{why} (its log says why)")
            try:
                response = httpx.get(f"{self.base_url}/readyz", timeout=2.0)
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if response.status_code == 200:
                    return
                last = f"/readyz answered {response.status_code}"
            time.sleep(0.05)
        raise ServerStartError(f"{self.base_url} not ready within {timeout:g} s ({last})")

    def stop(self, timeout: float = 15.0) -> None:
        """Shut uvicorn down (the app's shutdown runs: a last audit checkpoint) and release the port."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._socket.close()
        if self.services is not None:
            self.services.engine.dispose()
