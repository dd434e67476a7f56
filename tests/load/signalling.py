"""Signalling load: many concurrent consultations on one ``telemed serve`` process.

Each consultation is a host (clinician, no device) and a room endpoint (posture token and
proof in ``hello``) on two sockets. The traffic model, per consultation:

* **join**: host hello, room hello (waiting room), the host admits the room;
* **negotiate at once**: the host sends an offer (~3 KB SDP), the room answers on receipt,
  and each side trickles ``ice_at_start`` candidates (~200 B), one every 250 ms;
* **steady**: every ``renegotiate_every_s`` (first one at a random offset, so consultations
  do not move in lock step) an offer, its answer and 2 ICE candidates each way; every
  ``keepalive_every_s`` each socket sends a ``ping`` (answered ``pong``);
* **end**: the host sends ``end``; both sockets must see ``consultation.ended`` and close 4410.

Latency is per relayed message (offer, answer, ICE), send to receive, both ends in this
process (one clock), so it includes this process's own queueing. An error is anything a
user would notice: a join or admission that fails, an ``error`` message, a socket that
closes other than by the end (4410), a relayed message that never arrives.

The server's memory (VmRSS of the child) is sampled every second. After warm-up (all joined
and at least one renegotiation round) it must stay flat: growth over the measured period
at most ``MEMORY_BOUND_PCT`` % of the measured baseline or ``MEMORY_BOUND_MB``, whichever is
larger.

The hub's per-socket rate limit is raised for the run (``TELEMED_SIGNALLING_RATE_PER_S``,
``TELEMED_SIGNALLING_BURST``): every socket comes from 127.0.0.1 and the limit exists to stop
abuse, not to be measured. There is no per-IP socket limit to raise.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jose import jwt as jose_jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from device_policy.keys import generate_device_key, key_thumbprint, public_key_b64
from device_policy.policy import DeviceKind as PolicyDeviceKind
from device_policy.posture_token import issue_posture_token
from device_policy.proof import sign_request_proof
from records.models import Patient
from server.consultations import joining
from server.consultations import service as consultations
from server.db import session_scope, utcnow
from server.devices.models import Device, DeviceKind
from server.identity import service as identity
from server.identity.models import Role
from server.services import Services
from tests.load.common import (
    MemorySamples,
    local_services,
    median,
    percentile,
    raise_fd_limit,
    rss_mb,
    scratch_database,
    server_env,
    start_server,
)

SDP = "v=0\r\n" + "a=x-load-padding:" + "x" * 3000 + "\r\n"
CANDIDATE = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 10.0.0.5 rport 46154"
ENDED_CLOSE = 4410
MEMORY_BOUND_PCT = 5.0
MEMORY_BOUND_MB = 10.0
CONSULTATIONS_PER_HOST = 20
TIMEOUT = 30.0


@dataclass(frozen=True)
class SignallingModel:
    """How many consultations, for how long, and the traffic each makes."""

    consultations: int = 50
    seconds: float = 8.0  # the measured period (memory must stay flat over it)
    warmup_s: float = 4.0  # after the last join, before measuring
    renegotiate_every_s: float = 4.0
    keepalive_every_s: float = 2.0
    ice_at_start: int = 4
    join_concurrency: int = 25

    @classmethod
    def long(cls, consultations: int = 1000, seconds: float = 180.0) -> SignallingModel:
        """The long run: realistic intervals (an offer/answer every 30 s, a ping every 10 s)."""
        return cls(
            consultations=consultations,
            seconds=seconds,
            warmup_s=35.0,
            renegotiate_every_s=30.0,
            keepalive_every_s=10.0,
        )


@dataclass
class Booking:
    """One consultation and what its two sides need to join it."""

    consultation_id: str
    host_token: str
    room_token: str
    room_key: Ed25519PrivateKey
    posture_token: str


@dataclass
class SignallingReport:
    """The figures of one run and whether it passed."""

    model: SignallingModel
    joined: int = 0
    ended: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    join_ms: list[float] = field(default_factory=list)
    relayed: int = 0
    relayed_measured: int = 0
    frames_sent: int = 0
    elapsed_s: float = 0.0
    measured_s: float = 0.0
    memory: MemorySamples = field(default_factory=MemorySamples)
    open_sockets_after: float | None = None  # telemed_signalling_connections once every call ended

    @property
    def memory_baseline_mb(self) -> float:
        return median(self.memory.of("measured")[:3])

    @property
    def memory_end_mb(self) -> float:
        return median(self.memory.of("measured")[-3:])

    @property
    def memory_growth_mb(self) -> float:
        return self.memory_end_mb - self.memory_baseline_mb

    @property
    def memory_bound_mb(self) -> float:
        return max(self.memory_baseline_mb * MEMORY_BOUND_PCT / 100, MEMORY_BOUND_MB)

    @property
    def memory_flat(self) -> bool:
        return len(self.memory.of("measured")) >= 3 and self.memory_growth_mb <= self.memory_bound_mb

    @property
    def passed(self) -> bool:
        return (
            not self.errors
            and self.joined == self.model.consultations
            and self.memory_flat
            and self.open_sockets_after == 0
        )

    def lines(self) -> list[str]:
        """The figures, one per line, ending with PASS or FAIL."""
        m = self.model
        peak = max((mb for _, mb, _ in self.memory.samples), default=float("nan"))
        lines = [
            f"signalling load: {m.consultations} consultations ({2 * m.consultations} sockets) on one "
            f"telemed serve; warm-up {m.warmup_s:.0f} s, measured {self.measured_s:.0f} s, "
            f"total {self.elapsed_s:.0f} s",
            f"  model: offer+answer every {m.renegotiate_every_s:.0f} s, {m.ice_at_start} ICE per side at "
            f"start (4/s), 2 per side per renegotiation, ping every {m.keepalive_every_s:.0f} s per socket",
            f"  joined {self.joined}, ended {self.ended}, errors {len(self.errors)}",
            f"  join+admit: p50 {median(self.join_ms):.0f} ms, p99 {percentile(self.join_ms, 0.99):.0f} ms",
            f"  relay latency ({len(self.latencies_ms)} messages): p50 {median(self.latencies_ms):.1f} ms, "
            f"p99 {percentile(self.latencies_ms, 0.99):.1f} ms, "
            f"max {max(self.latencies_ms, default=0):.1f} ms",
            f"  relayed messages/s: {self.relayed / max(self.elapsed_s, 1e-9):.0f} over the run, "
            f"{self.relayed_measured / max(self.measured_s, 1e-9):.0f} in the measured period; "
            f"frames sent by clients {self.frames_sent}",
            f"  server RSS: before joins {median(self.memory.of('ramp')[:1]):.1f} MB, peak {peak:.1f} MB, "
            f"measured baseline {self.memory_baseline_mb:.1f} MB -> end {self.memory_end_mb:.1f} MB "
            f"(growth {self.memory_growth_mb:+.1f} MB, bound {self.memory_bound_mb:.1f} MB = "
            f"max({MEMORY_BOUND_PCT:.0f} %, {MEMORY_BOUND_MB:.0f} MB)), after end "
            f"{median(self.memory.of('after')[-1:]):.1f} MB",
            f"  open sockets on the server after every end: {self.open_sockets_after}",
        ]
        lines += [f"  error: {e}" for e in self.errors[:10]]
        if len(self.errors) > 10:
            lines.append(f"  ... and {len(self.errors) - 10} more errors")
        lines.append(
            "PASS"
            if self.passed
            else "FAIL (errors, missing joins, memory growth beyond the bound or sockets left open)"
        )
        return lines


# --- booking ------------------------------------------------------------------------------------


def book(services: Services, count: int, posture_ttl: timedelta) -> list[Booking]:
    """Hosts, patients, enrolled room endpoints and ``count`` consultations starting now, with tokens."""
    bookings: list[Booking] = []
    hosts: list[tuple[str, str]] = []  # (host user id, patient id)
    run = secrets.token_hex(3)
    with session_scope(services.engine) as session:
        for h in range((count + CONSULTATIONS_PER_HOST - 1) // CONSULTATIONS_PER_HOST):
            user = identity.create_user(
                session=session,
                username=f"load-{run}-host-{h}",
                password=secrets.token_urlsafe(16),
                role=Role.CLINICIAN,
                display_name=f"Load Host {h}",
            )
            patient = Patient(
                prison_number=f"L{h:04d}AA",
                name=f"Load Patient {h}",
                date_of_birth=date(1980, 1, 1),
                establishment="HMP Load",
            )
            session.add(patient)
            session.flush()
            hosts.append((user.id, patient.id))
    for first in range(0, count, 100):
        chunk = range(first, min(first + 100, count))
        with session_scope(services.engine) as session:
            for n in chunk:
                host_id, patient_id = hosts[n // CONSULTATIONS_PER_HOST]
                key = generate_device_key()
                device_id = f"load-{run}-room-{n:05d}"
                session.add(
                    Device(
                        id=device_id,
                        kind=DeviceKind.ROOM_ENDPOINT,
                        display_name=f"Load room {n}",
                        serial=f"SN-{device_id}",
                        model="Load model",
                        establishment="HMP Load",
                        public_key=public_key_b64(key.public_key()),
                        key_thumbprint=key_thumbprint(key.public_key()),
                    )
                )
                session.flush()
                start = utcnow()
                booked = consultations.schedule_consultation(
                    session=session,
                    patient_id=patient_id,
                    host_user_id=host_id,
                    room_device_id=device_id,
                    specialist=None,
                    start=start,
                    end=start + timedelta(hours=1),
                    created_by=host_id,
                )
                host_token = joining.host_join_token(
                    session=session, jwt=services.jwt, consultation=booked, by_user_id=host_id
                ).token
                room_token = joining.room_join_token(
                    session=session, jwt=services.jwt, device_id=device_id
                ).token
                posture = issue_posture_token(
                    signer=services.jwt,
                    device_id=device_id,
                    device_kind=PolicyDeviceKind.ROOM_ENDPOINT,
                    thumbprint=key_thumbprint(key.public_key()),
                    policy_version="load",
                    policy_hash="0" * 64,
                    ttl=posture_ttl,
                )
                bookings.append(Booking(booked.id, host_token, room_token, key, posture))
    return bookings


# --- the clients --------------------------------------------------------------------------------


class Run:
    """Shared state of one run: the clock, outstanding relayed messages, figures."""

    def __init__(self, ws_url: str, model: SignallingModel, report: SignallingReport) -> None:
        self.ws_url = ws_url
        self.model = model
        self.report = report
        self.sent_at: dict[str, float] = {}
        self.phase = "ramp"
        self.stop = asyncio.Event()
        self._seq = itertools.count()
        self.join_slots = asyncio.Semaphore(model.join_concurrency)
        self.settled = 0
        self.all_settled = asyncio.Event()

    def error(self, consultation: int, what: str) -> None:
        self.report.errors.append(f"consultation {consultation}: {what}")

    def settle(self) -> None:
        self.settled += 1
        if self.settled == self.model.consultations:
            self.all_settled.set()

    async def send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        self.report.frames_sent += 1
        await ws.send(json.dumps({"v": 1, **message}))

    async def relay(self, ws: ClientConnection, kind: str, to: str, **fields: Any) -> str:
        """Send an offer/answer/ICE to ``to``; its connection_id is the key its arrival is timed by."""
        key = f"lm{next(self._seq):012d}"
        self.sent_at[key] = time.perf_counter()
        await self.send(ws, {"type": kind, "to": to, "connection_id": key, **fields})
        return key

    def arrived(self, key: str) -> None:
        sent = self.sent_at.pop(key, None)
        if sent is None:
            return
        self.report.latencies_ms.append((time.perf_counter() - sent) * 1000)
        self.report.relayed += 1
        if self.phase == "measured":
            self.report.relayed_measured += 1


async def _until(ws: ClientConnection, kind: str, ref: str | None = None) -> dict[str, Any]:
    """Read until a message of ``kind`` (with ``ref``); an ``error`` on the way is raised."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == "error":
                raise RuntimeError(f"error {message.get('code')}: {message.get('message')}")
            if message["type"] == kind and (ref is None or message.get("ref") == ref):
                return message


class Consultation:
    """One consultation's two sockets, driven through its whole life."""

    def __init__(self, run: Run, n: int, booking: Booking) -> None:
        self.run = run
        self.n = n
        self.booking = booking
        self.host: ClientConnection | None = None
        self.room: ClientConnection | None = None
        self.host_id = ""
        self.room_id = ""
        self.ending = False
        self.mine: set[str] = set()

    async def join(self) -> None:
        run, b = self.run, self.booking
        started = time.perf_counter()
        self.host = host = await connect(run.ws_url, max_size=None, open_timeout=TIMEOUT, ping_interval=None)
        await run.send(host, {"type": "hello", "join_token": b.host_token})
        self.host_id = str((await _until(host, "welcome"))["participant_id"])
        self.room = room = await connect(run.ws_url, max_size=None, open_timeout=TIMEOUT, ping_interval=None)
        proof = sign_request_proof(
            b.room_key,
            method="WS",
            url=run.ws_url,
            token_jti=jose_jwt.get_unverified_claims(b.posture_token)["jti"],
            iat=utcnow(),
            nonce=jose_jwt.get_unverified_claims(b.room_token)["jti"],
        )
        hello = {"type": "hello", "join_token": b.room_token, "posture_token": b.posture_token}
        await run.send(room, {**hello, "posture_proof": proof})
        self.room_id = str((await _until(room, "welcome"))["participant_id"])
        await run.send(host, {"type": "admit", "id": "admit", "participant": self.room_id})
        await _until(host, "ack", ref="admit")
        await _until(room, "admitted")
        run.report.join_ms.append((time.perf_counter() - started) * 1000)
        run.report.joined += 1

    async def read(self, ws: ClientConnection, side: str) -> None:
        """Time relayed messages, answer offers (room), count errors; returns when the socket closes."""
        run = self.run
        try:
            async for frame in ws:
                message = json.loads(frame)
                kind = message["type"]
                if kind in ("offer", "answer", "ice"):
                    run.arrived(message["connection_id"])
                    if kind == "offer" and side == "room":
                        self.mine.add(await run.relay(ws, "answer", self.host_id, sdp=SDP))
                elif kind == "error":
                    run.error(self.n, f"{side} got error {message.get('code')}: {message.get('message')}")
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if not (self.ending and code == ENDED_CLOSE):
                run.error(self.n, f"{side} socket closed {code} {exc.rcvd.reason if exc.rcvd else ''}")
            return
        run.error(self.n, f"{side} socket closed without a close frame")

    async def negotiate(self, ice: int, gap: float) -> None:
        """An offer from the host, then ``ice`` candidates each way ``gap`` s apart."""
        assert self.host is not None and self.room is not None
        run = self.run
        self.mine.add(await run.relay(self.host, "offer", self.room_id, sdp=SDP))
        for _ in range(ice):
            ice_fields = {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}
            self.mine.add(await run.relay(self.host, "ice", self.room_id, **ice_fields))
            self.mine.add(await run.relay(self.room, "ice", self.host_id, **ice_fields))
            await asyncio.sleep(gap)

    async def live(self) -> None:
        """Join, negotiate, keep the call going until the run stops, then end it."""
        run, model = self.run, self.run.model
        try:
            async with run.join_slots:
                await self.join()
        except Exception as exc:
            run.error(self.n, f"join failed: {type(exc).__name__}: {exc}")
            run.settle()
            await self.close()
            return
        assert self.host is not None and self.room is not None
        readers = [
            asyncio.create_task(self.read(self.host, "host")),
            asyncio.create_task(self.read(self.room, "room")),
        ]
        run.settle()
        try:
            await self.negotiate(model.ice_at_start, 0.25)
            loop = asyncio.get_running_loop()
            next_offer = loop.time() + random.uniform(0, model.renegotiate_every_s)  # noqa: S311 - spread
            next_ping = loop.time() + random.uniform(0, model.keepalive_every_s)  # noqa: S311 - spread
            while not run.stop.is_set():
                wait = max(0.0, min(next_offer, next_ping) - loop.time())
                try:
                    await asyncio.wait_for(run.stop.wait(), wait)
                    break
                except TimeoutError:
                    pass
                if loop.time() >= next_ping:
                    await run.send(self.host, {"type": "ping"})
                    await run.send(self.room, {"type": "ping"})
                    next_ping += model.keepalive_every_s
                if loop.time() >= next_offer:
                    await self.negotiate(2, 0.0)
                    next_offer += model.renegotiate_every_s
            await self.finish(readers)
        except Exception as exc:
            run.error(self.n, f"{type(exc).__name__}: {exc}")
            for task in readers:
                task.cancel()
            await self.close()

    async def finish(self, readers: list[asyncio.Task[None]]) -> None:
        """Wait for this consultation's messages in flight, then the host ends it."""
        assert self.host is not None
        run = self.run
        async with asyncio.timeout(TIMEOUT):
            while any(key in run.sent_at for key in self.mine):
                await asyncio.sleep(0.1)
        self.ending = True
        await run.send(self.host, {"type": "end", "reason": "load test done"})
        done, pending = await asyncio.wait(readers, timeout=TIMEOUT)
        for task in pending:
            task.cancel()
            run.error(self.n, "a socket was still open after the end")
        if not pending:
            run.report.ended += 1

    async def close(self) -> None:
        for ws in (self.host, self.room):
            if ws is not None:
                await ws.close()


async def drive(ws_url: str, pid: int, bookings: list[Booking], report: SignallingReport) -> None:
    """Run every consultation through its life, sampling the server's memory each second."""
    model = report.model
    run = Run(ws_url, model, report)
    started = time.perf_counter()

    async def sample() -> None:
        while True:
            report.memory.add(time.perf_counter() - started, rss_mb(pid), run.phase)
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    tasks = [asyncio.create_task(Consultation(run, n, b).live()) for n, b in enumerate(bookings)]
    await run.all_settled.wait()
    run.phase = "warmup"
    await asyncio.sleep(model.warmup_s)
    run.phase = "measured"
    measured_from = time.perf_counter()
    await asyncio.sleep(model.seconds)
    report.measured_s = time.perf_counter() - measured_from
    run.phase = "ending"
    run.stop.set()
    await asyncio.gather(*tasks)
    report.elapsed_s = time.perf_counter() - started
    run.phase = "after"
    await asyncio.sleep(2.5)
    sampler.cancel()
    metrics_url = ws_url.replace("ws://", "http://", 1).split("/ws/", 1)[0] + "/metrics"
    async with httpx.AsyncClient(timeout=10) as probe:
        text = (await probe.get(metrics_url)).text
    found = re.search(r"^telemed_signalling_connections (\S+)$", text, re.MULTILINE)
    report.open_sockets_after = float(found.group(1)) if found else None
    lost = len(run.sent_at)
    if lost:
        report.errors.append(f"{lost} relayed messages never arrived")


def run_signalling(model: SignallingModel) -> SignallingReport:
    """Book, start the server, drive the load, stop; the report (no assertion here)."""
    raise_fd_limit(4 * model.consultations + 1024)
    report = SignallingReport(model=model)
    with tempfile.TemporaryDirectory(prefix="telemed-load-") as tmp, scratch_database() as url:
        workdir = Path(tmp)
        env = server_env(
            url,
            workdir,
            TELEMED_SIGNALLING_RATE_PER_S="1000000",
            TELEMED_SIGNALLING_BURST="1000000",
        )
        services = local_services(env)
        try:
            # Long enough for the whole run; the hub suspends a room whose posture lapses.
            ttl = timedelta(seconds=max(300.0, 3 * (model.warmup_s + model.seconds) + 120))
            bookings = book(services, model.consultations, min(ttl, timedelta(minutes=10)))
        finally:
            services.engine.dispose()
        server = start_server(env, workdir)
        try:
            asyncio.run(drive(server.ws_url, server.pid, bookings, report))
            if not server.running:
                report.errors.append("the server process died")
        finally:
            server.stop()
            if report.errors:
                tail = server.logs()[-2000:]
                if tail.strip():
                    report.errors.append(f"server log tail: {tail}")
    return report
