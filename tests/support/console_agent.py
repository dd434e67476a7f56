"""Start the laptop agent (``telemed-client console``) for a test, and talk to it as the page does.

Two ways to run it, both on 127.0.0.1 with a real uvicorn:

* :class:`AgentThread` — in a background thread of this process, with the :class:`ConsoleAgent`
  object reachable (``thread.agent``) so a test can look at the tokens it holds;
* :class:`AgentProcess` — ``telemed-client console --no-browser`` as a child process, the way a
  laptop starts it; the launch URL is read from its output.

:class:`ConsolePage` is an httpx client that behaves like the console page in a browser: it
opens the launch URL (getting the cookie) and sends its own Origin.

Example::

    with AgentThread(server_url, "laptop-01", key, source=SimulatedSource("compliant")) as running:
        async with ConsolePage(running) as page:
            state = (await page.get("/api/state")).json()
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from clinic_client.console.app import STATIC_DIR, create_console_app
from clinic_client.console.cli import LAUNCH_LINE_PREFIX, bind_localhost
from clinic_client.console.guard import Gate
from clinic_client.console.session import ConsoleAgent
from clinic_client.posture import FactSource

LAUNCH_RE = re.compile(re.escape(LAUNCH_LINE_PREFIX) + r"(http://127\.0\.0\.1:(\d+)/launch/\S+)")


class RunningAgent(Protocol):
    """What :class:`ConsolePage` needs: the agent's base URL and its one-time launch URL."""

    @property
    def base_url(self) -> str: ...

    @property
    def launch_url(self) -> str: ...


class ServingThread:
    """An agent's app (``serve(app)`` once built) under uvicorn in a background thread, on its
    own event loop and a free port of 127.0.0.1 (the console's agent, the room screen's)."""

    def __init__(self, gate_for: Callable[[int], Gate]) -> None:
        self._sock = bind_localhost(0)
        self.port: int = self._sock.getsockname()[1]
        self.gate = gate_for(self.port)

    def serve(self, app: FastAPI) -> None:
        """Run ``app`` when started."""
        self.app = app
        config = uvicorn.Config(app, log_config=None, lifespan="on", ws_ping_interval=None)
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"agent-{self.port}", daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[self._sock])

        asyncio.run(serve())

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.gate.origin

    @property
    def launch_url(self) -> str:
        """The one-time launch URL."""
        return self.gate.launch_url

    @property
    def ws_url(self) -> str:
        """The signalling bridge."""
        return f"ws://127.0.0.1:{self.port}/api/signalling"

    async def run(self, coro: Any) -> Any:
        """Run a coroutine on the agent's loop (e.g. to read state that tasks there change)."""
        assert self._loop is not None, "the agent is not running"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def start(self, timeout: float = 10.0) -> Self:
        """Start and wait until uvicorn has started."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the agent did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop uvicorn (the agent shuts down: signs out, leaves) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class AgentThread(ServingThread):
    """The console agent's app under uvicorn in a background thread (its own event loop)."""

    def __init__(
        self,
        server_url: str,
        device_id: str,
        key: Ed25519PrivateKey,
        *,
        source: FactSource,
        static_dir: Path = STATIC_DIR,
        **agent_options: Any,
    ) -> None:
        super().__init__(Gate)
        self.agent = ConsoleAgent(
            server_url=server_url, device_id=device_id, private_key=key, source=source, **agent_options
        )
        self.serve(create_console_app(self.agent, self.gate, static_dir=static_dir))


class AgentProcess:
    """``telemed-client console --no-browser`` in a child process; ``launch_url`` from its output."""

    launch_re = LAUNCH_RE  # the line the agent prints

    def __init__(
        self,
        server_url: str,
        device_id: str,
        key_file: Path,
        *,
        simulate: str | None = "compliant",
        workdir: Path,
        extra_args: list[str] | None = None,
    ) -> None:
        self.args = [
            sys.executable,
            "-c",
            "from clinic_client.cli import main; main()",
            "console",
            "--server",
            server_url,
            "--device-id",
            device_id,
            "--key-file",
            str(key_file),
            "--no-browser",
            *(["--simulate", simulate] if simulate else []),
            *(extra_args or []),
        ]
        self.workdir = workdir
        self.log_path = workdir / "console-agent.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._launch_url = ""
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def launch_url(self) -> str:
        """The one-time launch URL the agent printed."""
        return self._launch_url

    def logs(self) -> str:
        """Everything the process wrote."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20.0) -> Self:
        """Start; wait for the launch URL and for the port to answer."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.args,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.launch_re.search(self.logs())
            if found:
                self._launch_url, self.port = found.group(1), int(found.group(2))
                break
            if self._process.poll() is not None:
                raise RuntimeError(f"the console agent exited:\n{self.logs()[-2000:]}")
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"no launch URL within {timeout} s:\n{self.logs()[-2000:]}")
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base_url}/api/state", timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the console agent does not answer")

    def stop(self, timeout: float = 10.0) -> None:
        """TERM, then KILL; reap."""
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


class ConsolePage(httpx.AsyncClient):
    """An httpx client that talks to the agent as the console page does (cookie, own Origin)."""

    def __init__(self, running: RunningAgent, *, launch: bool = True, **kwargs: Any) -> None:
        super().__init__(
            base_url=running.base_url, headers={"Origin": running.base_url}, timeout=30.0, **kwargs
        )
        self.running = running
        self._launch = launch

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._launch:
            response = await self.get(self.running.launch_url)
            assert response.status_code == 303, response.text
        return self
