"""HTTP load: many concurrent clinicians on the records and consultation API, on PostgreSQL.

``telemed serve`` runs in a child process on a fresh, uniquely named database on the shared
PostgreSQL server. ``HOSTS`` clinicians each host a live consultation from an enrolled
prison laptop (posture token bound to the laptop's key) and have one patient document;
every client is one of them and, after taking a record grant, loops without think time
(closed loop: this measures what the server sustains, not a user's pace) over a weighted mix:

=====================================================  ======
route                                                  weight
=====================================================  ======
``GET /api/v1/schedule`` (today's list)                 3
``GET /api/v1/consultations/{id}`` (detail)             3
``GET /api/v1/records/documents/{id}/content`` (grant)  3
``POST /api/v1/records/notes`` (grant, write)           1
``POST /api/v1/records/grants`` (a fresh grant)          1
=====================================================  ======

Record calls carry ``X-Record-Grant`` and a fresh ``X-Posture-Proof`` by the laptop's key
(one nonce each); a grant request carries ``X-Posture-Token`` and its proof.

Passes when no answer is 5xx or otherwise unexpected, no request fails outright, and the
connection pool (``telemed_db_pool_checked_out`` on ``/metrics``) is back at its baseline
after the run (pg_stat_activity for the run's database is reported beside it). The sign-in
throttle's per-IP allowance is raised (``TELEMED_LOGIN_FREE_ATTEMPTS_PER_CLIENT``) since every
client signs in from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jose import jwt as jose_jwt

from device_policy.keys import generate_device_key, key_thumbprint, public_key_b64
from device_policy.policy import DeviceKind as PolicyDeviceKind
from device_policy.posture_token import issue_posture_token
from device_policy.proof import sign_request_proof
from records.models import Patient
from server.consultations import service as consultations
from server.db import session_scope, utcnow
from server.devices.models import Device, DeviceKind
from server.identity import service as identity
from server.identity.models import Role
from server.services import Services
from tests.load.common import (
    PG_ADMIN_URL,
    database_connections,
    local_services,
    median,
    percentile,
    pool_gauges,
    raise_fd_limit,
    scratch_database,
    server_env,
    settled_pool,
    start_server,
)

HOSTS = 20
PASSWORD = secrets.token_urlsafe(16)
DOCUMENT = ("Discharge letter (load test, fictional). " * 400).encode()  # ~16 KB
MIX = (
    ("GET /schedule", 3),
    ("GET /consultations/{id}", 3),
    ("GET /records/documents/{id}/content", 3),
    ("POST /records/notes", 1),
    ("POST /records/grants", 1),
)
EXPECTED = {
    "GET /schedule": 200,
    "GET /consultations/{id}": 200,
    "GET /records/documents/{id}/content": 200,
    "POST /records/notes": 201,
    "POST /records/grants": 201,
}


@dataclass(frozen=True)
class HttpModel:
    """How many clients for how long."""

    clients: int = 50
    seconds: float = 10.0

    @classmethod
    def long(cls, clients: int = 200, seconds: float = 60.0) -> HttpModel:
        return cls(clients=clients, seconds=seconds)


@dataclass
class Clinician:
    """A host on an enrolled laptop with a live consultation and a document of its patient."""

    username: str
    consultation_id: str
    patient_id: str
    device_id: str
    key: Ed25519PrivateKey
    posture_token: str = ""
    access_token: str = ""
    document_id: str = ""


@dataclass
class HttpReport:
    """The figures of one run and whether it passed."""

    model: HttpModel
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # bodies of the first unexpected answers
    elapsed_s: float = 0.0
    pool_before: dict[str, float] = field(default_factory=dict)
    pool_after: dict[str, float] = field(default_factory=dict)
    pool_peak_checked_out: float = 0.0
    pg_after: dict[str, int] = field(default_factory=dict)

    def record(self, route: str, status: int, seconds: float) -> None:
        self.latencies.setdefault(route, []).append(seconds * 1000)
        self.statuses.setdefault(route, Counter())[status] += 1

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def server_errors(self) -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if s >= 500)

    @property
    def unexpected(self) -> int:
        return sum(n for r, c in self.statuses.items() for s, n in c.items() if s != EXPECTED[r])

    @property
    def pool_returned(self) -> bool:
        before = self.pool_before.get("checked_out")
        return before is not None and self.pool_after.get("checked_out") == before

    @property
    def passed(self) -> bool:
        return (
            self.requests > 0
            and not self.failures
            and self.server_errors == 0
            and self.unexpected == 0
            and self.pool_returned
        )

    def lines(self) -> list[str]:
        """The figures, one per line, ending with PASS or FAIL."""
        m = self.model
        lines = [
            f"HTTP load: {m.clients} clients x {m.seconds:.0f} s on PostgreSQL, {HOSTS} clinicians with "
            f"live consultations; {self.requests} requests, "
            f"{self.requests / max(self.elapsed_s, 1e-9):.0f}/s, "
            f"5xx {self.server_errors}, unexpected statuses {self.unexpected}, failed {len(self.failures)}",
        ]
        for route, _ in MIX:
            values = self.latencies.get(route, [])
            statuses = dict(sorted(self.statuses.get(route, Counter()).items()))
            lines.append(
                f"  {route:<40} n={len(values):>6}  p50 {median(values):7.1f} ms  "
                f"p99 {percentile(values, 0.99):7.1f} ms  statuses {statuses}"
            )
        lines.append(
            f"  pool: checked out before {self.pool_before.get('checked_out')}, peak seen "
            f"{self.pool_peak_checked_out:.0f}, after {self.pool_after.get('checked_out')} "
            f"(size {self.pool_after.get('size')}, overflow {self.pool_after.get('overflow')}); "
            f"pg_stat_activity after: {self.pg_after}"
        )
        lines += [f"  failure: {f}" for f in self.failures[:10]]
        lines += [f"  unexpected: {e}" for e in self.examples]
        lines.append(
            "PASS" if self.passed else "FAIL (5xx, unexpected answers, failures or a pool not returned)"
        )
        return lines


# --- booking ------------------------------------------------------------------------------------


def book(services: Services) -> tuple[str, list[Clinician]]:
    """An admin and ``HOSTS`` clinicians, each with a laptop, a patient and a live consultation."""
    run = secrets.token_hex(3)
    admin = f"load-{run}-admin"
    clinicians: list[Clinician] = []
    with session_scope(services.engine) as session:
        identity.create_user(
            session=session, username=admin, password=PASSWORD, role=Role.ADMIN, display_name="Load Admin"
        )
    for h in range(HOSTS):
        key = generate_device_key()
        with session_scope(services.engine) as session:
            user = identity.create_user(
                session=session,
                username=f"load-{run}-gp-{h}",
                password=PASSWORD,
                role=Role.CLINICIAN,
                display_name=f"Load GP {h}",
                establishment="HMP Load",
            )
            device_id = f"load-{run}-laptop-{h:03d}"
            session.add(
                Device(
                    id=device_id,
                    kind=DeviceKind.PRISON_LAPTOP,
                    display_name=f"Load laptop {h}",
                    serial=f"SN-{device_id}",
                    model="Load model",
                    establishment="HMP Load",
                    public_key=public_key_b64(key.public_key()),
                    key_thumbprint=key_thumbprint(key.public_key()),
                )
            )
            patient = Patient(
                prison_number=f"H{h:04d}AA",
                name=f"Load Patient {h}",
                date_of_birth=date(1980, 1, 1),
                establishment="HMP Load",
            )
            session.add(patient)
            session.flush()
            now = utcnow()
            for later in (timedelta(minutes=30), timedelta(minutes=0)):  # one later, one now (live)
                booked = consultations.schedule_consultation(
                    session=session,
                    patient_id=patient.id,
                    host_user_id=user.id,
                    room_device_id=None,
                    specialist=("Dr Outside", None),
                    start=now + later,
                    end=now + later + timedelta(hours=1),
                    created_by=user.id,
                )
            consultations.mark_host_present(session=session, consultation=booked)
            consultations.confirm_identity(session=session, consultation=booked, by_user_id=user.id)
            consultations.record_consent(
                session=session, consultation=booked, by_user_id=user.id, consent="verbal", note=None
            )
            consultations.start_consultation(session=session, consultation=booked, by_user_id=user.id)
        clinicians.append(
            Clinician(
                username=user.username,
                consultation_id=booked.id,
                patient_id=patient.id,
                device_id=device_id,
                key=key,
                posture_token=issue_posture_token(
                    signer=services.jwt,
                    device_id=device_id,
                    device_kind=PolicyDeviceKind.PRISON_LAPTOP,
                    thumbprint=key_thumbprint(key.public_key()),
                    policy_version="load",
                    policy_hash="0" * 64,
                    ttl=timedelta(minutes=10),
                ),
            )
        )
    return admin, clinicians


def sign_in(base: str, username: str) -> str:
    resp = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": username, "password": PASSWORD}, timeout=30
    )
    resp.raise_for_status()
    token: str = resp.json()["access_token"]
    return token


def prepare(base: str, admin: str, clinicians: list[Clinician]) -> None:
    """Sign everyone in and import each patient's document through the API (as an admin would)."""
    admin_headers = {"Authorization": f"Bearer {sign_in(base, admin)}"}
    for c in clinicians:
        c.access_token = sign_in(base, c.username)
        resp = httpx.post(
            f"{base}/api/v1/records/patients/{c.patient_id}/documents",
            params={"doc_type": "letter", "title": "Discharge letter", "document_date": "2026-11-01"},
            content=DOCUMENT,
            headers={**admin_headers, "Content-Type": "text/plain"},
            timeout=30,
        )
        resp.raise_for_status()
        c.document_id = resp.json()["id"]


# --- the clients --------------------------------------------------------------------------------


def proof(c: Clinician, method: str, url: str, token: str) -> str:
    """A fresh request proof by the laptop's key, bound to ``token`` (posture token or grant)."""
    return sign_request_proof(
        c.key,
        method=method,
        url=url,
        token_jti=jose_jwt.get_unverified_claims(token)["jti"],
        iat=utcnow(),
        nonce=secrets.token_urlsafe(16),
    )


async def client_loop(
    client: httpx.AsyncClient, base: str, c: Clinician, deadline: float, report: HttpReport, seed: int
) -> None:
    """One clinician's client: a grant, then the weighted mix until ``deadline``."""
    rng = random.Random(seed)  # noqa: S311 - a workload mix, not a secret
    bearer = {"Authorization": f"Bearer {c.access_token}"}
    grant = ""
    routes = [r for r, _ in MIX]
    weights = [w for _, w in MIX]
    route = "POST /records/grants"
    while True:
        if route == "GET /schedule":
            method, path, kwargs = "GET", "/api/v1/schedule", {"headers": bearer}
        elif route == "GET /consultations/{id}":
            method, path, kwargs = "GET", f"/api/v1/consultations/{c.consultation_id}", {"headers": bearer}
        elif route == "POST /records/grants":
            method, path = "POST", "/api/v1/records/grants"
            posture = {"X-Posture-Token": c.posture_token}
            posture["X-Posture-Proof"] = proof(c, method, base + path, c.posture_token)
            kwargs = {"headers": {**bearer, **posture}, "json": {"consultation_id": c.consultation_id}}
        else:
            method = "GET" if route.startswith("GET") else "POST"
            path = (
                f"/api/v1/records/documents/{c.document_id}/content"
                if method == "GET"
                else "/api/v1/records/notes"
            )
            headers = {
                **bearer,
                "X-Record-Grant": grant,
                "X-Posture-Proof": proof(c, method, base + path, grant),
            }
            kwargs = {"headers": headers}
            if method == "POST":
                kwargs["json"] = {"text": f"Seen on video; plan reviewed ({rng.randrange(10**6)})."}
        started = time.perf_counter()
        try:
            resp = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            report.failures.append(f"{route}: {type(exc).__name__}: {exc}")
        else:
            report.record(route, resp.status_code, time.perf_counter() - started)
            if resp.status_code != EXPECTED[route] and len(report.examples) < 10:
                report.examples.append(f"{route}: {resp.status_code} {resp.text[:300]}")
            if route == "POST /records/grants" and resp.status_code == 201:
                grant = resp.json()["grant"]
        if time.perf_counter() >= deadline:
            return
        route = rng.choices(routes, weights)[0] if grant else "POST /records/grants"


async def drive(base: str, clinicians: list[Clinician], report: HttpReport) -> None:
    model = report.model
    limits = httpx.Limits(max_connections=model.clients, max_keepalive_connections=model.clients)
    peak = 0.0

    async def watch_pool() -> None:
        nonlocal peak
        async with httpx.AsyncClient(base_url=base, timeout=10) as probe:
            while True:
                text = (await probe.get("/metrics")).text
                for line in text.splitlines():
                    if line.startswith("telemed_db_pool_checked_out "):
                        peak = max(peak, float(line.split()[1]))
                await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_pool())
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        deadline = started + model.seconds
        await asyncio.gather(
            *(
                client_loop(client, base, clinicians[n % len(clinicians)], deadline, report, n)
                for n in range(model.clients)
            )
        )
        report.elapsed_s = time.perf_counter() - started
    watcher.cancel()
    report.pool_peak_checked_out = peak


def run_http(model: HttpModel) -> HttpReport:
    """Book, start the server on a fresh PostgreSQL database, drive the load, check the pool."""
    raise_fd_limit(2 * model.clients + 1024)
    report = HttpReport(model=model)
    with tempfile.TemporaryDirectory(prefix="telemed-load-") as tmp, scratch_database() as url:
        workdir = Path(tmp)
        env = server_env(url, workdir, TELEMED_LOGIN_FREE_ATTEMPTS_PER_CLIENT="1000")
        services = local_services(env)
        try:
            admin, clinicians = book(services)
        finally:
            services.engine.dispose()
        server = start_server(env, workdir)
        try:
            prepare(server.base_url, admin, clinicians)
            report.pool_before = pool_gauges(server.base_url)
            asyncio.run(drive(server.base_url, clinicians, report))
            report.pool_after = settled_pool(server.base_url, report.pool_before.get("checked_out", 0.0))
            report.pg_after = database_connections(PG_ADMIN_URL, url)
            if not server.running:
                report.failures.append("the server process died")
        finally:
            server.stop()
    return report
