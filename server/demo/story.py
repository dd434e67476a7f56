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

Each step checks what it expects (``server.demo.chapters``) and the timeline records it
(``server.demo.steps``).
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from server.demo.chapters import audit, call, clinic, posture, records
from server.demo.context import Context, DemoOptions
from server.demo.steps import Observer, Shown, StepResult, Timeline

__all__ = ["STORY", "Demo", "DemoOptions", "DemoResult", "run_demo"]

Chapter = Callable[[Context], Awaitable[Shown]]

STORY: list[tuple[str, str, Chapter]] = [
    ("server", "Start the server", clinic.start_server),
    ("accounts", "Create an admin and a clinician", clinic.create_accounts),
    ("patient", "Import a patient and a document", clinic.import_patient),
    ("devices", "Enrol a prison laptop and a room endpoint", clinic.enrol_devices),
    ("schedule", "Schedule the consultation", clinic.schedule),
    ("posture", "Laptop posture check", posture.laptop_compliant),
    ("identity", "Confirm identity, record consent", call.identity_and_consent),
    ("host_join", "Clinician joins from the laptop", call.host_joins),
    ("room_join", "Room endpoint joins the waiting room", call.room_joins),
    ("admit", "Clinician admits the room", call.admit_room),
    ("live", "Consultation goes live", call.go_live),
    ("media", "Media flows both ways", call.media_flows),
    ("document", "Read the patient's document under a grant", records.read_document),
    ("note", "Write a consultation note", records.write_note),
    ("end", "End the consultation", call.end_consultation),
    ("grant_after_end", "The grant no longer works", records.grant_after_end),
    ("posture_refused", "Laptop with SIM PIN lock off is refused", posture.sim_pin_off_refused),
    ("audit", "Export and verify the audit trail", audit.export_and_verify),
]
"""The steps in order: key (stable, for machines), name (for people), what runs."""


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


class Demo:
    """One run of the story against a server of its own (see the module docstring)."""

    def __init__(self, options: DemoOptions, observer: Observer | None = None) -> None:
        self.options = options
        self.ctx = Context(options, observer)
        self.timeline = Timeline(self.ctx.observer)
        self._closed = False

    async def run(self) -> DemoResult:
        """Run every step in order; the result says which did what they should."""
        for key, name, chapter in STORY:
            await self.timeline.step(key, name, partial(chapter, self.ctx))
        return self.result()

    def result(self) -> DemoResult:
        """The timeline so far."""
        server = self.ctx.server
        return DemoResult(
            ok=self.timeline.ok,
            seconds=self.timeline.elapsed,
            steps=list(self.timeline.results),
            server_url=server.base_url if server else "",
            data_dir=str(self.options.data_dir),
        )

    async def close(self) -> None:
        """Leave the call, stop the server; remove the data if asked and every step passed."""
        if self._closed:
            return
        self._closed = True
        await self.ctx.close()
        if self.options.remove_data and self.timeline.ok:
            shutil.rmtree(self.options.data_dir, ignore_errors=True)


async def run_demo(options: DemoOptions, observer: Observer | None = None) -> DemoResult:
    """Run the whole story and clean up; the timeline says whether every step did what it should."""
    demo = Demo(options, observer)
    try:
        return await demo.run()
    finally:
        await demo.close()
