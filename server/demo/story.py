"""The demo's story, step by step, through the product's real HTTP and WebSocket APIs and SDKs.

A server on embedded defaults starts in a fresh data directory; an admin and a GP are
created the way ``telemed init`` creates the first admin; everything after that goes
through the API the way a real admin, laptop and room endpoint would: the patient and a
document are imported, the two devices enrolled with keys generated for them, the
consultation booked; the laptop attests (simulated compliant facts), the GP confirms
identity and consent, host and room join with aiortc through the signalling server, the
room is admitted, the call goes live and media flows; the GP reads the document under a
grant bound to the laptop's key and writes a note; the call ends and the grant stops
working; a laptop without its SIM PIN lock is refused with the remediation; the audit
trail is exported with ``telemed audit export`` and verified offline.

Each step checks what it expects and the timeline records it (``server.demo.steps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.call import LocalMedia, synthetic_media
from clinic_client.posture import PostureAgent, PostureCheckFailed, SimulatedSource
from clinic_client.session import (
    ConsultationSession,
    SessionState,
    host_join_token,
    room_join_token,
)
from device_policy.keys import generate_device_key, key_thumbprint, public_key_b64, save_private_key
from device_policy.simulated import SimulatedProfile
from records.audit.export import verify_export_file
from records.audit.signing import load_public_keys
from server.demo import cast
from server.demo.api import Api, ApiRefused, bearer
from server.demo.embedded import EmbeddedServer, cli_environment, telemed_command
from server.demo.laptop import Grant, RecordAccess
from server.demo.steps import Observer, QuietObserver, Shown, StepResult, Timeline, Unexpected

CONSULTATION_LENGTH = timedelta(minutes=30)
MEDIA_SECONDS = 4.0
WAIT_S = 30.0
HOST_TAG, ROOM_TAG = 1, 2


@dataclass(frozen=True)
class DemoOptions:
    """How to run the story.

    ``data_dir`` should be new or empty (the story creates its accounts there).
    ``remove_data`` deletes it when the demo closes after a successful run (a failed run
    keeps it, with the server log, for a look).
    """

    data_dir: Path
    remove_data: bool = False
    media_seconds: float = MEDIA_SECONDS


@dataclass(frozen=True)
class DemoResult:
    """The timeline of one run."""

    ok: bool
    seconds: float
    steps: list[StepResult]
    server_url: str
    data_dir: str

    def step(self, key: str) -> StepResult:
        """One step's result, by key."""
        for result in self.steps:
            if result.key == key:
                return result
        raise KeyError(key)

    def to_json(self) -> dict[str, Any]:
        """The run as a JSON object (``telemed demo --json``)."""
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "server_url": self.server_url,
            "data_dir": self.data_dir,
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass
class Device:
    """An enrolled device of the story and the key its agent holds."""

    card: cast.DeviceCard
    key: Ed25519PrivateKey
    key_file: Path


@dataclass
class Party:
    """A participant in the call: its session and the synthetic camera and microphone it sends."""

    session: ConsultationSession
    media: LocalMedia

    @property
    def id(self) -> str:
        """Participant id (``host:…``, ``room:…``)."""
        return self.session.client.participant_id


@dataclass
class Scene:
    """What the story has built so far."""

    credentials: cast.Credentials | None = None
    admin_token: str = ""
    clinician_token: str = ""
    patient_id: str = ""
    document_id: str = ""
    document_sha256: str = ""
    document_size: int = 0
    devices: dict[str, Device] = field(default_factory=dict)
    consultation_id: str = ""
    laptop_agent: PostureAgent | None = None
    room_agent: PostureAgent | None = None
    host: Party | None = None
    room: Party | None = None
    grant: Grant | None = None


class Demo:
    """One run of the story against a server of its own (see the module docstring)."""

    def __init__(self, options: DemoOptions, observer: Observer | None = None) -> None:
        self.options = options
        self.observer: Observer = observer or QuietObserver()
        self.timeline = Timeline(self.observer)
        self.server: EmbeddedServer | None = None
        self.api: Api | None = None
        self.scene = Scene()
        self._closed = False

    # --- running -------------------------------------------------------------------------

    @property
    def demo_dir(self) -> Path:
        """Where the story keeps what a person needs to carry on: passwords, device keys, exports."""
        return self.options.data_dir / "demo"

    async def run(self) -> DemoResult:
        """Run every step in order; the result says which did what they should."""
        t = self.timeline
        await t.step("server", "Start the server", self._start_server)
        await t.step("accounts", "Create an admin and a clinician", self._accounts)
        await t.step("patient", "Import a patient and a document", self._patient)
        await t.step("devices", "Enrol a prison laptop and a room endpoint", self._devices)
        await t.step("schedule", "Schedule the consultation", self._schedule)
        await t.step("posture", "Laptop posture check", self._posture)
        await t.step("identity", "Confirm identity, record consent", self._identity)
        await t.step("host_join", "Clinician joins from the laptop", self._host_join)
        await t.step("room_join", "Room endpoint joins the waiting room", self._room_join)
        await t.step("admit", "Clinician admits the room", self._admit)
        await t.step("live", "Consultation goes live", self._live)
        await t.step("media", "Media flows both ways", self._media)
        await t.step("document", "Read the patient's document under a grant", self._document)
        await t.step("note", "Write a consultation note", self._note)
        await t.step("end", "End the consultation", self._end)
        await t.step("grant_after_end", "The grant no longer works", self._grant_after_end)
        await t.step("posture_refused", "Laptop with SIM PIN lock off is refused", self._posture_refused)
        await t.step("audit", "Export and verify the audit trail", self._audit)
        return self.result()

    def result(self) -> DemoResult:
        """The timeline so far."""
        return DemoResult(
            ok=self.timeline.ok,
            seconds=self.timeline.elapsed,
            steps=list(self.timeline.results),
            server_url=self.server.base_url if self.server else "",
            data_dir=str(self.options.data_dir),
        )

    async def close(self) -> None:
        """Leave the call, stop the agents and the server; remove the data if asked and all went well."""
        if self._closed:
            return
        self._closed = True
        for party in (self.scene.host, self.scene.room):
            if party is not None:
                with contextlib.suppress(Exception):
                    await party.session.close()
                party.media.stop()
        for agent in (self.scene.laptop_agent, self.scene.room_agent):
            if agent is not None:
                await agent.aclose()
        if self.api is not None:
            await self.api.aclose()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        if self.options.remove_data and self.timeline.ok:
            shutil.rmtree(self.options.data_dir, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------

    def _api(self) -> Api:
        if self.api is None:
            raise RuntimeError("the server is not running")
        return self.api

    def _server(self) -> EmbeddedServer:
        if self.server is None or self.server.services is None:
            raise RuntimeError("the server is not running")
        return self.server

    def _device(self, card: cast.DeviceCard) -> Device:
        return self.scene.devices[card.id]

    def agent(
        self, card: cast.DeviceCard, profile: SimulatedProfile = SimulatedProfile.COMPLIANT
    ) -> PostureAgent:
        """A posture agent for an enrolled device, reporting a simulated profile."""
        device = self._device(card)
        return PostureAgent(
            server_url=self._server().base_url,
            device_id=card.id,
            private_key=device.key,
            source=SimulatedSource(profile, **card.identifiers),
        )

    async def join_call(self, token: str, tag: int, posture: PostureAgent) -> Party:
        """Join a consultation with a join token, sending synthetic video and a tone."""
        media = synthetic_media(source_tag=tag)
        try:
            session = await ConsultationSession.join(
                self._server().base_url, token, media=media, posture=posture
            )
        except BaseException:
            media.stop()
            raise
        return Party(session=session, media=media)

    def _parties(self) -> tuple[Party, Party]:
        if self.scene.host is None or self.scene.room is None:
            raise RuntimeError("host and room are not both in the call")
        return self.scene.host, self.scene.room

    async def _consultation(self) -> dict[str, Any]:
        return await self._api().json(
            "GET",
            f"/api/v1/consultations/{self.scene.consultation_id}",
            headers=bearer(self.scene.clinician_token),
        )

    async def _wait(self, party: Party, what: str, predicate: Callable[[SessionState], bool]) -> SessionState:
        try:
            return await party.session.wait_until(predicate, WAIT_S)
        except TimeoutError:
            state = party.session.state
            raise Unexpected(
                f"{what} did not happen within {WAIT_S:g} s (status {state.status}, "
                f"consultation {state.consultation_state})"
            ) from None

    # --- the steps -----------------------------------------------------------------------

    async def _start_server(self) -> Shown:
        self.server = EmbeddedServer(self.options.data_dir)
        await asyncio.to_thread(self.server.start)
        self.api = Api(self.server.base_url)
        health = await self.api.json("GET", "/readyz")
        if health.get("status") != "ready":
            raise Unexpected(f"/readyz says {health.get('status')!r}")
        settings = self.server.settings
        return Shown(
            f"{self.server.base_url} · SQLite, in-process bus, {settings.environment.value} mode",
            {
                "url": self.server.base_url,
                "database": "sqlite",
                "bus": "in-process",
                "environment": settings.environment.value,
            },
        )

    async def _accounts(self) -> Shown:
        server = self._server()
        assert server.services is not None  # noqa: S101 - checked by _server
        credentials = await asyncio.to_thread(cast.create_accounts, server.services.engine)
        self.scene.credentials = credentials
        api = self._api()
        self.scene.admin_token = await api.login(cast.ADMIN.username, credentials.password(cast.ADMIN))
        self.scene.clinician_token = await api.login(
            cast.CLINICIAN.username, credentials.password(cast.CLINICIAN)
        )
        for person in (cast.ADMIN, cast.CLINICIAN):
            cast.write_secret(self.demo_dir / f"{person.username}.password", credentials.password(person))
        me = await api.json("GET", "/api/v1/me", headers=bearer(self.scene.clinician_token))
        if me.get("role") != "clinician":
            raise Unexpected(f"the clinician signed in with role {me.get('role')!r}")
        return Shown(
            f"{cast.ADMIN.username} (admin) and {cast.CLINICIAN.username} (clinician) created and signed in",
            {"admin": cast.ADMIN.username, "clinician": cast.CLINICIAN.username},
        )

    async def _patient(self) -> Shown:
        api, admin = self._api(), bearer(self.scene.admin_token)
        card = cast.PATIENT
        patient = await api.json(
            "POST",
            "/api/v1/patients",
            json={
                "prison_number": card.prison_number,
                "name": card.name,
                "date_of_birth": card.date_of_birth.isoformat(),
                "establishment": card.establishment,
            },
            headers=admin,
        )
        self.scene.patient_id = str(patient["id"])
        content = cast.discharge_summary()
        document = await api.json(
            "POST",
            f"/api/v1/records/patients/{self.scene.patient_id}/documents",
            params={
                "doc_type": cast.DOCUMENT_TYPE,
                "title": cast.DOCUMENT_TITLE,
                "document_date": datetime.now(UTC).date().isoformat(),
                "author": "Dr R. Hale",
            },
            content=content,
            headers={**admin, "Content-Type": "text/plain"},
        )
        expected = hashlib.sha256(content).hexdigest()
        if document["sha256"] != expected or document["size"] != len(content):
            raise Unexpected("the server's size or SHA-256 of the imported document differs from the file's")
        self.scene.document_id = str(document["id"])
        self.scene.document_sha256 = expected
        self.scene.document_size = len(content)
        return Shown(
            f"patient {card.prison_number}; {cast.DOCUMENT_TITLE.lower()} {len(content)} bytes, "
            f"sha256 {expected[:12]}…, encrypted at rest",
            {
                "prison_number": card.prison_number,
                "document_bytes": len(content),
                "document_sha256": expected,
            },
        )

    async def _devices(self) -> Shown:
        api, admin = self._api(), bearer(self.scene.admin_token)
        shown: list[str] = []
        for card in (cast.LAPTOP, cast.ROOM):
            key = generate_device_key()
            key_file = save_private_key(_private_dir(self.demo_dir) / f"{card.id}.pem", key)
            enrolled = await api.json(
                "POST",
                "/api/v1/devices",
                json={
                    "id": card.id,
                    "kind": card.kind.value,
                    "public_key": public_key_b64(key.public_key()),
                    "serial": card.serial,
                    "model": card.model,
                    "establishment": cast.ESTABLISHMENT,
                    "display_name": card.display_name,
                    **card.identifiers,
                },
                headers=admin,
            )
            if (
                enrolled["key_thumbprint"] != key_thumbprint(key.public_key())
                or enrolled["status"] != "active"
            ):
                raise Unexpected(f"{card.id} was not enrolled as an active device with its key")
            self.scene.devices[card.id] = Device(card=card, key=key, key_file=key_file)
            shown.append(f"{card.id} ({card.kind.value})")
        return Shown(
            f"{' and '.join(shown)}; Ed25519 keys generated on the devices",
            {"laptop": cast.LAPTOP.id, "room": cast.ROOM.id},
        )

    async def _schedule(self) -> Shown:
        start = datetime.now(UTC)
        booked = await self._api().json(
            "POST",
            "/api/v1/consultations",
            json={
                "patient_id": self.scene.patient_id,
                "room_device_id": cast.ROOM.id,
                "scheduled_start": start.isoformat(),
                "scheduled_end": (start + CONSULTATION_LENGTH).isoformat(),
            },
            headers=bearer(self.scene.clinician_token),
        )
        self.scene.consultation_id = str(booked["id"])
        if booked.get("state") != "scheduled":
            raise Unexpected(f"the new consultation is {booked.get('state')!r}, not scheduled")
        minutes = int(CONSULTATION_LENGTH.total_seconds() // 60)
        return Shown(
            f"{cast.CLINICIAN.username} hosts, patient in {cast.ROOM.id}, now → +{minutes} min; scheduled",
            {"consultation_id": self.scene.consultation_id, "state": "scheduled"},
        )

    async def _posture(self) -> Shown:
        self.scene.laptop_agent = agent = self.agent(cast.LAPTOP)
        result = await agent.attest()
        if not result.report.compliant:
            raise Unexpected("the compliant laptop was not found compliant")
        passed = sum(1 for r in result.report.results if r.outcome.value == "pass")
        minutes = max(0, round(result.expires_in().total_seconds() / 60))
        return Shown(
            f"compliant: {passed}/{len(result.report.results)} rules pass (policy {result.policy_version}); "
            f"posture token for {minutes} min, bound to the laptop's key",
            {
                "compliant": True,
                "rules_passed": passed,
                "rules": len(result.report.results),
                "policy_version": result.policy_version,
            },
        )

    async def _identity(self) -> Shown:
        api, clinician = self._api(), bearer(self.scene.clinician_token)
        cid = self.scene.consultation_id
        checked = await api.json("POST", f"/api/v1/consultations/{cid}/identity-check", headers=clinician)
        if checked.get("prison_number") != cast.PATIENT.prison_number:
            raise Unexpected("the identity check showed another patient")
        consent = await api.json(
            "POST", f"/api/v1/consultations/{cid}/consent", json={"consent": "verbal"}, headers=clinician
        )
        if not consent.get("identity_confirmed_at") or not consent.get("consent_recorded_at"):
            raise Unexpected("identity check or consent was not recorded")
        return Shown(
            f"identity checked ({checked['prison_number']}, name, date of birth); verbal consent recorded",
            {"identity_confirmed": True, "consent_recorded": True},
        )

    async def _host_join(self) -> Shown:
        agent = self.scene.laptop_agent
        if agent is None:
            raise RuntimeError("the laptop has not attested")
        server = self._server()
        ticket = await host_join_token(
            server.base_url, self.scene.clinician_token, self.scene.consultation_id, posture=agent
        )
        self.scene.host = host = await self.join_call(ticket.token, HOST_TAG, agent)
        state = host.session.state
        if state.status != "admitted" or state.role != "host":
            raise Unexpected(f"the host joined as {state.role!r} with status {state.status!r}")
        consultation = await self._consultation()
        if consultation["state"] != "open":
            raise Unexpected(f"the consultation is {consultation['state']!r} with the host present, not open")
        return Shown(
            f"signed in, join token with posture, socket open as {host.id}; consultation open",
            {"participant": host.id, "consultation_state": "open"},
        )

    async def _room_join(self) -> Shown:
        host = self.scene.host
        if host is None:
            raise RuntimeError("the host is not in the call")
        self.scene.room_agent = agent = self.agent(cast.ROOM)
        ticket = await room_join_token(self._server().base_url, agent)
        self.scene.room = room = await self.join_call(ticket.token, ROOM_TAG, agent)
        if room.session.state.status != "waiting":
            raise Unexpected(f"the room endpoint is {room.session.state.status!r}, not waiting")
        await self._wait(
            host,
            "the host seeing the room wait",
            lambda s: any(p.id == room.id and p.status == "waiting" for p in s.others),
        )
        return Shown(
            f"attested (simulated compliant), joined as {room.id}; waiting until the host admits it",
            {"participant": room.id, "status": "waiting"},
        )

    async def _admit(self) -> Shown:
        host, room = self._parties()
        await host.session.admit(room.id)
        await self._wait(room, "admission", lambda s: s.status == "admitted")
        return Shown(f"{room.id} admitted", {"status": "admitted"})

    async def _live(self) -> Shown:
        host, room = self._parties()
        await host.session.start_consultation()
        for party in (host, room):
            await self._wait(party, "going live", lambda s: s.consultation_state == "live")
        consultation = await self._consultation()
        if consultation["state"] != "live":
            raise Unexpected(f"the server says the consultation is {consultation['state']!r}")
        return Shown("host started it; both sides told it is live", {"consultation_state": "live"})

    async def _media(self) -> Shown:
        host, room = self._parties()
        self.observer.progress("connecting media (aiortc, ICE over loopback)")
        for party in (host, room):
            await self._wait(party, "media connecting", lambda s: s.media_connected)
        loop = asyncio.get_running_loop()
        until = loop.time() + self.options.media_seconds
        give_up = until + 10.0  # RTT needs an RTCP receiver report each way; they come every second or so
        while True:
            at_host = (await host.session.stats()).get(room.id)
            at_room = (await room.session.stats()).get(host.id)
            frames_in_host = at_host.video_frames_received if at_host else 0
            frames_in_room = at_room.video_frames_received if at_room else 0
            rtts = [s.rtt_ms for s in (at_host, at_room) if s is not None and s.rtt_ms is not None]
            self.observer.progress(
                f"media flowing: laptop ← room {frames_in_host} frames, room ← laptop {frames_in_room} frames"
            )
            now = loop.time()
            if now >= give_up or (now >= until and len(rtts) == 2):
                break
            await asyncio.sleep(0.5)
        if frames_in_host <= 0 or frames_in_room <= 0:
            raise Unexpected(
                f"no video one way: laptop received {frames_in_host} frames, room {frames_in_room}",
                frames_laptop_received=frames_in_host,
                frames_room_received=frames_in_room,
            )
        rtt = f"RTT {rtts[0]:.1f} / {rtts[1]:.1f} ms" if len(rtts) == 2 else "RTT not reported yet"
        return Shown(
            f"video frames received: laptop ← room {frames_in_host}, room ← laptop {frames_in_room}; {rtt}",
            {
                "frames_laptop_received": frames_in_host,
                "frames_room_received": frames_in_room,
                "audio_frames_laptop_received": at_host.audio_frames_received if at_host else 0,
                "audio_frames_room_received": at_room.audio_frames_received if at_room else 0,
                "rtt_ms_laptop": _round(at_host.rtt_ms if at_host else None),
                "rtt_ms_room": _round(at_room.rtt_ms if at_room else None),
                "candidate_type": at_host.local_candidate_type if at_host else None,
            },
        )

    def _records(self) -> RecordAccess:
        agent = self.scene.laptop_agent
        if agent is None:
            raise RuntimeError("the laptop has not attested")
        return RecordAccess(
            self._api(),
            access_token=self.scene.clinician_token,
            agent=agent,
            key=self._device(cast.LAPTOP).key,
        )

    async def _document(self) -> Shown:
        records = self._records()
        self.scene.grant = grant = await records.grant(self.scene.consultation_id)
        content = await records.read_document(self.scene.document_id, grant)
        digest = hashlib.sha256(content).hexdigest()
        if digest != self.scene.document_sha256 or len(content) != self.scene.document_size:
            raise Unexpected("the document read back differs from the one imported")
        minutes = max(1, round((grant.expires_at - datetime.now(UTC)).total_seconds() / 60))
        return Shown(
            f"grant ({grant.scope}, {minutes} min, bound to the laptop key); "
            f"{len(content)} bytes, sha256 {digest[:12]}… matches the import",
            {
                "scope": grant.scope,
                "bytes": len(content),
                "sha256": digest,
                "sha256_matches": True,
            },
        )

    async def _note(self) -> Shown:
        grant = self.scene.grant
        if grant is None:
            raise RuntimeError("no grant")
        note = await self._records().write_note(grant, cast.NOTE_TEXT)
        if note.get("latest_version") != 1 or note.get("consultation_id") != self.scene.consultation_id:
            raise Unexpected("the note was not saved as version 1 of this consultation's note")
        return Shown(
            f"note {str(note['id'])[:8]}… version 1 saved (encrypted), linked to the consultation",
            {"note_version": 1},
        )

    async def _end(self) -> Shown:
        host, room = self._parties()
        await host.session.end("consultation complete")
        for party in (host, room):
            await self._wait(party, "the end", lambda s: s.status == "ended")
        consultation = await self._consultation()
        if consultation["state"] != "ended":
            raise Unexpected(f"the server says the consultation is {consultation['state']!r}")
        for party in (host, room):
            await party.session.close()
            party.media.stop()
        return Shown("host ended it; both sides told; consultation ended", {"consultation_state": "ended"})

    async def _grant_after_end(self) -> Shown:
        grant = self.scene.grant
        if grant is None:
            raise RuntimeError("no grant")
        try:
            await self._records().read_document(self.scene.document_id, grant)
        except ApiRefused as refused:
            return Shown(
                f"reading the document again: refused, {refused.status} {refused.code}",
                {"refused": True, "status": refused.status, "code": refused.code},
            )
        raise Unexpected("the grant still read the document after the consultation ended", refused=False)

    async def _posture_refused(self) -> Shown:
        async with self.agent(cast.LAPTOP, SimulatedProfile.SIM_PIN_OFF) as agent:
            try:
                await agent.attest()
            except PostureCheckFailed as failed:
                rules = [rule.id for rule in failed.failed_rules]
                remediation = next(
                    (r.remediation for r in failed.failed_rules if r.id == "sim-pin-lock" and r.remediation),
                    None,
                )
                if remediation is None:
                    raise Unexpected(
                        f"refused, but not for the SIM PIN lock (failed: {', '.join(rules)})",
                        failed_rules=rules,
                    ) from None
                return Shown(
                    f"refused ({failed.code}): {remediation}",
                    {"refused": True, "code": failed.code, "failed_rules": rules, "remediation": remediation},
                )
        raise Unexpected("a laptop with its SIM PIN lock off got a posture token", refused=False)

    async def _audit(self) -> Shown:
        server, api = self._server(), self._api()
        export = self.demo_dir / "audit-export.jsonl"
        self.observer.progress("telemed audit export")
        process = await asyncio.create_subprocess_exec(
            *telemed_command("audit", "export", "--output", str(export)),
            env=cli_environment(server.settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise Unexpected(f"telemed audit export exited {process.returncode}: {last[0]}")
        key = await api.json("GET", "/api/v1/audit/public-key")
        with export.open("r", encoding="utf-8") as stream:
            report = verify_export_file(stream, load_public_keys(str(key["public_key_pem"]).encode()))
        online = await api.json("GET", "/api/v1/audit/verify", headers=bearer(self.scene.admin_token))
        facts: dict[str, Any] = {
            "ok": report.ok,
            "entries": report.entries_checked,
            "checkpoints": report.checkpoints_checked,
            "anchored": report.anchored_size,
            "server_ok": bool(online.get("ok")),
            "server_entries": int(online.get("entries_checked", 0)),
        }
        if not report.ok:
            raise Unexpected(f"the export does not verify: {report.problem}: {report.message}", **facts)
        if not online.get("ok"):
            raise Unexpected(f"the server's own verification failed: {online.get('message')}", **facts)
        if report.entries_checked == 0 or report.checkpoints_checked == 0:
            raise Unexpected("the export holds no entries or no signed checkpoint", **facts)
        return Shown(
            f"{report.entries_checked} entries, {report.checkpoints_checked} signed checkpoints, "
            f"hash chain and signatures verify offline: ok",
            facts,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


async def run_demo(options: DemoOptions, observer: Observer | None = None) -> DemoResult:
    """Run the whole story and clean up; the timeline says whether every step did what it should."""
    demo = Demo(options, observer)
    try:
        return await demo.run()
    finally:
        await demo.close()
