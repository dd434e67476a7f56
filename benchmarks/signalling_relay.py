"""Relay throughput and latency of the signalling hub, next to a bare WebSocket relay.

Starts ``telemed serve`` in a child process (SQLite in a temporary directory, development
settings, the in-process bus; ``--redis URL`` for the Redis bus), books a consultation, joins a
host and a specialist, admits the specialist, then relays ``--messages`` offer/ICE messages
(one ~3 KB offer for every nine ~200-byte ICE candidates) from the host to the specialist
(with ``--redis URL --nodes 2``, host and specialist on two server processes, so every
message crosses Redis pub/sub):

* **throughput**: the host keeps up to ``--window`` messages in flight; messages/s is the
  count over the time until the last one arrives; latency is per message, send to receive
  (both ends in this process, one clock), so it includes queueing under load;
* **unloaded latency**: one message at a time.

The same run against a bare relay (a 20-line ``websockets`` server that forwards every frame
from one socket to the other, no parsing) gives the floor to compare with.

    .venv/bin/python benchmarks/signalling_relay.py --messages 20000 --window 64

Figures only, no assertions. The server's rate limit is raised for the run (it exists to stop
abuse, not to be measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect

console = Console()
SDP = "v=0\r\n" + "a=x-benchmark-padding:" + "x" * 3000 + "\r\n"
CANDIDATE = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 10.0.0.5 rport 46154"


# --- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def seed(env: dict[str, str]) -> tuple[str, str]:
    """Book a consultation starting now; a host join token and a specialist join token."""
    os.environ.update(env)
    # The server's modules are needed only here, to book what the run uses.
    from records.models import Patient
    from server.cli import prepare_database
    from server.consultations import invites, joining
    from server.consultations import service as consultations
    from server.db import session_scope, utcnow
    from server.identity import service as identity
    from server.identity.models import Role
    from server.services import Services
    from server.settings import Settings

    settings = Settings()
    prepare_database(settings)
    services = Services.build(settings)
    services.keys.load()
    with session_scope(services.engine) as session:
        host = identity.create_user(
            session=session,
            username="bench.host",
            password=secrets.token_urlsafe(16),
            role=Role.CLINICIAN,
            display_name="Bench Host",
        )
        patient = Patient(
            prison_number="B0000AA",
            name="Bench Patient",
            date_of_birth=date(1980, 1, 1),
            establishment="HMP Bench",
        )
        session.add(patient)
        session.flush()
        start = utcnow()
        booked = consultations.schedule_consultation(
            session=session,
            patient_id=patient.id,
            host_user_id=host.id,
            room_device_id=None,
            specialist=("Bench Specialist", None),
            start=start,
            end=start + timedelta(hours=1),
            created_by=host.id,
        )
        host_token = joining.host_join_token(
            session=session, jwt=services.jwt, consultation=booked, by_user_id=host.id
        ).token
        invite = invites.create_invite(
            session=session, consultation=booked, name="Bench Specialist", by_user_id=host.id
        )
        specialist_token = invites.redeem_invite(
            session=session, jwt=services.jwt, raw_token=invite.token
        ).token
    services.engine.dispose()
    return host_token, specialist_token


def start_telemed(
    workdir: Path, redis_url: str | None, nodes: int
) -> tuple[list[subprocess.Popen[bytes]], list[str], tuple[str, str]]:
    """Book the consultation, then start ``nodes`` server processes on the same database (and Redis)."""
    env = {
        "TELEMED_ENVIRONMENT": "development",
        "TELEMED_DATA_DIR": str(workdir / "data"),
        "TELEMED_SIGNALLING_RATE_PER_S": "1000000",
        "TELEMED_SIGNALLING_BURST": "1000000",
        "TELEMED_LOG_LEVEL": "WARNING",
        "TELEMED_LOG_JSON": "false",
    }
    if redis_url:
        env["TELEMED_REDIS_URL"] = redis_url
        env["TELEMED_REDIS_PREFIX"] = f"bench-{secrets.token_hex(4)}"
    tokens = seed(env)
    processes, urls = [], []
    for _ in range(nodes):
        port = free_port()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", "from server.cli import main; main()", "serve"],
            env={**os.environ, **env, "TELEMED_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        urls.append(f"ws://127.0.0.1:{port}/ws/v1/signalling")
    return processes, urls, tokens


BARE_RELAY = """
import asyncio, sys
from websockets.asyncio.server import serve
peers = []
async def handler(ws):
    peers.append(ws)
    try:
        async for frame in ws:
            for other in peers:
                if other is not ws:
                    await other.send(frame)
    finally:
        peers.remove(ws)
async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), max_size=2**20):
        await asyncio.Future()
asyncio.run(main())
"""


def start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE_RELAY, str(port)])  # noqa: S603 - our own code
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"ws://127.0.0.1:{port}/"
        time.sleep(0.05)
    raise SystemExit("the bare relay did not start")


# --- the measurement ------------------------------------------------------------------------------


def message(n: int, to: str) -> str:
    """Message ``n``: an offer every tenth, ICE otherwise; its number rides in connection_id."""
    connection_id = f"bench-{n:010d}"
    if n % 10 == 0:
        return json.dumps({"v": 1, "type": "offer", "to": to, "sdp": SDP, "connection_id": connection_id})
    return json.dumps(
        {"v": 1, "type": "ice", "to": to, "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0,
         "connection_id": connection_id}
    )  # fmt: skip


def number(frame: str | bytes) -> int | None:
    """The message number, found without parsing (the receiving side must not be the bottleneck)."""
    text = frame if isinstance(frame, str) else frame.decode()
    at = text.rfind('"bench-')
    return int(text[at + 7 : at + 17]) if at >= 0 else None


async def run(
    sender: ClientConnection, receiver: ClientConnection, to: str, count: int, window: int
) -> tuple[float, list[float]]:
    """Send ``count`` messages with at most ``window`` in flight; (seconds, latencies in ms)."""
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    slots = asyncio.Semaphore(window)
    done = asyncio.Event()

    async def receive() -> None:
        while len(latencies) < count:
            frame = await receiver.recv()
            n = number(frame)
            if n is None or n not in sent_at:
                continue
            latencies.append((time.perf_counter() - sent_at.pop(n)) * 1000)
            slots.release()
        done.set()

    frames = [message(n, to) for n in range(count)]
    reader = asyncio.create_task(receive())
    start = time.perf_counter()
    for n, frame in enumerate(frames):
        await slots.acquire()
        sent_at[n] = time.perf_counter()
        await sender.send(frame)
    await done.wait()
    elapsed = time.perf_counter() - start
    await reader
    return elapsed, latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def telemed_pair(
    urls: list[str], tokens: tuple[str, str]
) -> tuple[ClientConnection, ClientConnection, str]:
    """Host on the first node, specialist on the last (the same one unless ``--nodes 2``)."""
    host = await connect(urls[0], max_size=2**20)
    specialist = await connect(urls[-1], max_size=2**20)

    async def hello(ws: ClientConnection, token: str) -> dict[str, Any]:
        await ws.send(json.dumps({"v": 1, "type": "hello", "join_token": token}))
        while True:
            m = json.loads(await ws.recv())
            if m["type"] == "welcome":
                return dict(m)

    await hello(host, tokens[0])
    me = await hello(specialist, tokens[1])
    await host.send(json.dumps({"v": 1, "type": "admit", "participant": me["participant_id"]}))
    while json.loads(await specialist.recv())["type"] != "admitted":
        pass
    return host, specialist, str(me["participant_id"])


async def bare_pair(url: str) -> tuple[ClientConnection, ClientConnection, str]:
    return await connect(url, max_size=2**20), await connect(url, max_size=2**20), "peer"


async def measure(
    label: str,
    pair: Callable[[], Awaitable[tuple[ClientConnection, ClientConnection, str]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    sender, receiver, to = await pair()
    try:
        await run(sender, receiver, to, min(2000, args.messages), args.window)  # warm-up
        elapsed, loaded = await run(sender, receiver, to, args.messages, args.window)
        _, unloaded = await run(sender, receiver, to, args.latency_samples, 1)
    finally:
        await sender.close()
        await receiver.close()
    return {
        "relay": label,
        "messages/s": args.messages / elapsed,
        "p50 ms": statistics.median(loaded),
        "p99 ms": percentile(loaded, 0.99),
        "unloaded p50 ms": statistics.median(unloaded),
        "unloaded p99 ms": percentile(unloaded, 0.99),
    }


async def main(args: argparse.Namespace) -> None:
    results = []
    with tempfile.TemporaryDirectory(prefix="telemed-bench-") as tmp:
        if args.nodes > 1 and not args.redis:
            raise SystemExit("--nodes 2 needs --redis")
        processes, urls, tokens = start_telemed(Path(tmp), args.redis, args.nodes)
        try:
            label = "telemed hub" + (" (Redis bus)" if args.redis else "")
            if args.nodes > 1:
                label += ", across 2 nodes"
            results.append(await measure(label, lambda: telemed_pair(urls, tokens), args))
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)
    if not args.no_bare:
        bare, bare_url = start_bare()
        try:
            results.append(await measure("bare WebSocket relay", lambda: bare_pair(bare_url), args))
        finally:
            bare.terminate()
            bare.wait(10)
    table = Table(title=f"{args.messages} messages (1 offer ≈3 KB : 9 ICE ≈200 B), window {args.window}")
    for column in results[0]:
        table.add_column(column, justify="left" if column == "relay" else "right")
    for row in results:
        table.add_row(
            *(v if isinstance(v, str) else f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for v in row.values())
        )
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=64, help="messages in flight at most")
    parser.add_argument("--latency-samples", type=int, default=1000)
    parser.add_argument("--redis", default=None, help="use the Redis bus at this URL")
    parser.add_argument(
        "--nodes", type=int, choices=(1, 2), default=1, help="2: sender and receiver on two nodes"
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare relay baseline")
    asyncio.run(main(parser.parse_args()))
