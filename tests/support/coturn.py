"""A real coturn for tests: started on 127.0.0.1 with a random port and a random secret.

The server runs in TURN REST API mode (``use-auth-secret``), exactly as in production, with
the options a loopback test needs: ``allow-loopback-peers`` (coturn refuses 127.x peers by
default), ``relay-ip=127.0.0.1`` and a small random relay port range. STUN stays enabled
because readiness is checked with a STUN Binding request, which proves the UDP listener
answers, not just that the process exists.

Under ``CI=true`` a missing ``turnserver`` binary fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.services import service_missing

STUN_MAGIC_COOKIE = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
REALM = "telemed.test"


class CoturnStartError(RuntimeError):
    """coturn did not come up; the message carries its log."""


@dataclass
class CoturnServer:
    """A running coturn process and what a test needs to use it."""

    host: str
    port: int
    secret: bytes = field(repr=False)
    realm: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    min_port: int
    max_port: int

    @property
    def url(self) -> str:
        """The TURN url (UDP transport) clients are given."""
        return f"turn:{self.host}:{self.port}?transport=udp"

    def logs(self) -> str:
        """Everything coturn has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        """True while the process is alive."""
        return self.process.poll() is None


def turnserver_binary() -> str | None:
    """Path of the turnserver binary, from TELEMED_TURNSERVER or PATH (or /usr/bin)."""
    explicit = os.environ.get("TELEMED_TURNSERVER")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("turnserver") or (
        "/usr/bin/turnserver" if Path("/usr/bin/turnserver").is_file() else None
    )


def require_turnserver() -> str:
    """The binary, or fail (CI) / skip (developer machine) the calling test."""
    binary = turnserver_binary()
    if binary is None:
        service_missing("coturn (turnserver binary)")
        raise AssertionError("unreachable")  # service_missing always raises
    return binary


def _free_udp_and_tcp_port(host: str) -> int:
    """A port free for both UDP and TCP on host (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
        return port
    raise CoturnStartError("no free port for coturn")


def stun_binding_ok(host: str, port: int, timeout: float = 0.3) -> bool:
    """True if a STUN Binding request to host:port gets a success response."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    if len(data) < 20:
        return False
    message_type, _length, cookie = struct.unpack("!HHI", data[:8])
    return message_type == STUN_BINDING_SUCCESS and cookie == STUN_MAGIC_COOKIE and data[8:20] == transaction


def start_coturn(
    workdir: Path,
    *,
    binary: str,
    host: str = "127.0.0.1",
    secret: bytes | None = None,
    startup_timeout: float = 10.0,
) -> CoturnServer:
    """Start coturn in REST API mode on a random port and wait until it answers STUN."""
    workdir.mkdir(parents=True, exist_ok=True)
    secret = secret or secrets.token_hex(24).encode("ascii")
    port = _free_udp_and_tcp_port(host)
    # A random 200-port window keeps parallel runs from fighting over relay ports.
    min_port = 20000 + secrets.randbelow(200) * 200
    log_path = workdir / "turnserver.log"
    args = [
        binary,
        "-n",  # no config file: everything is on this command line
        f"--listening-ip={host}",
        f"--relay-ip={host}",
        f"--listening-port={port}",
        f"--min-port={min_port}",
        f"--max-port={min_port + 199}",
        "--use-auth-secret",
        f"--static-auth-secret={secret.decode('ascii')}",
        f"--realm={REALM}",
        "--fingerprint",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-rfc5780",
        "--allow-loopback-peers",
        f"--log-file={log_path}",
        "--simple-log",
        "--no-stdout-log",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--userdb={workdir / 'turndb'}",
        "--verbose",
    ]
    process = subprocess.Popen(  # noqa: S603 - fixed argv, binary found by us
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    server = CoturnServer(
        host=host,
        port=port,
        secret=secret,
        realm=REALM,
        process=process,
        log_path=log_path,
        workdir=workdir,
        min_port=min_port,
        max_port=min_port + 199,
    )
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if not server.running():
            raise CoturnStartError(
                f"turnserver exited with code {process.returncode} during startup; log:\n{server.logs()}"
            )
        if stun_binding_ok(host, port):
            return server
        time.sleep(0.1)
    stop_coturn(server)
    raise CoturnStartError(
        f"turnserver did not answer STUN on {host}:{port} within {startup_timeout} s; log:\n{server.logs()}"
    )


def stop_coturn(server: CoturnServer, timeout: float = 5.0) -> None:
    """Stop the process (TERM, then KILL) and reap it."""
    if server.running():
        server.process.terminate()
        try:
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=timeout)


@contextmanager
def running_coturn(workdir: Path) -> Iterator[CoturnServer]:
    """A coturn for the duration of the block (fails/skips when coturn is missing)."""
    binary = require_turnserver()
    server = start_coturn(workdir, binary=binary)
    try:
        yield server
    finally:
        stop_coturn(server)
