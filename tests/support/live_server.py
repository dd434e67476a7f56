"""A real uvicorn server for end-to-end tests: in a thread of this process, or as a subprocess.

:class:`LiveServer` runs an app object (so a test can reach its ``Services`` and hub) on a
free port in a background thread with its own event loop. :class:`ServerProcess` runs
``telemed serve`` in a child process configured by ``TELEMED_*`` variables — what two
nodes sharing Redis need. Both wait until ``/readyz`` answers 200 before returning.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI

from server.signalling.limits import WS_MAX_FRAME_BYTES
from server.signalling.routes import SIGNALLING_PATH
from tests.support.services import free_port

T = TypeVar("T")


class ServerStartError(RuntimeError):
    """The server did not become ready; the message says why (with its log for a subprocess)."""


def _wait_ready(base_url: str, timeout: float, alive: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise ServerStartError("the server stopped during startup")
        try:
            resp = httpx.get(f"{base_url}/readyz", timeout=1.0)
            if resp.status_code == 200:
                return
            last = f"/readyz answered {resp.status_code}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise ServerStartError(f"{base_url} not ready within {timeout} s ({last})")


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app: FastAPI, *, port: int | None = None) -> None:
        self.app = app
        self.host = "127.0.0.1"
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_config=None,
            lifespan="on",
            ws_max_size=WS_MAX_FRAME_BYTES,
            ws_ping_interval=None,
        )
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve()

        asyncio.run(serve())

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop (where its hub lives) and await the result."""
        assert self._loop is not None, "the server is not running"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The signalling socket URL."""
        return f"ws://{self.host}:{self.port}{SIGNALLING_PATH}"

    def start(self, timeout: float = 15.0) -> Self:
        """Start and wait until ready."""
        self._thread.start()
        _wait_ready(self.base_url, timeout, alive=self._thread.is_alive)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Ask uvicorn to exit (runs the app's shutdown) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ServerProcess:
    """``telemed serve`` in a child process, configured by ``env`` (``TELEMED_*``)."""

    def __init__(self, env: dict[str, str], *, workdir: Path, name: str = "server") -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._env = {
            **os.environ,
            **env,
            "TELEMED_HOST": self.host,
            "TELEMED_PORT": str(self.port),
            "TELEMED_PUBLIC_URL": f"http://{self.host}:{self.port}",
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The signalling socket URL."""
        return f"ws://{self.host}:{self.port}{SIGNALLING_PATH}"

    def logs(self) -> str:
        """What the process has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 30.0) -> Self:
        """Start and wait until ready (the log is in the error if it is not)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from server.cli import main; main()", "serve"],
            env=self._env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            _wait_ready(self.base_url, timeout, alive=lambda: self.running)
        except ServerStartError as exc:
            self.stop()
            raise ServerStartError(f"{exc}; log:\n{self.logs()[-4000:]}") from None
        return self

    @property
    def pid(self) -> int:
        """The process id of the running server (for /proc/<pid>/status)."""
        assert self._process is not None, "the server has not been started"
        return self._process.pid

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """TERM (uvicorn shuts down gracefully), then KILL; reap."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
