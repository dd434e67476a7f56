"""A consultation as one node sees it: the presence records (cached) and the sockets it holds.

The cache is what makes the relay cheap: "is the sender admitted? is the recipient?" are
two dictionary look-ups. It is kept current by this node's own writes and by the change
events other nodes publish; each record carries the revision the presence store gave it,
so an event older than what the cache holds is ignored.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from server.signalling.presence import (
    CONSULTATION_FIELD,
    PARTICIPANT_PREFIX,
    ParticipantRecord,
    Stored,
)
from server.signalling.protocol import ConsultationState, ParticipantView

if TYPE_CHECKING:
    from server.signalling.bus import Handler
    from server.signalling.connection import Connection


class Room:
    """One consultation on this node."""

    def __init__(self, consultation_id: str, *, channel: str) -> None:
        self.id = consultation_id
        self.channel = channel
        self.patient_id: str | None = None
        self.state: ConsultationState = "scheduled"
        self.records: dict[str, ParticipantRecord] = {}
        self.raw: dict[str, str] = {}
        self.revs: dict[str, int] = {}
        self.local: dict[str, Connection] = {}
        self.grace_timers: dict[str, asyncio.TimerHandle] = {}
        # Sockets that closed while presence was unreachable (participant id -> socket id): their
        # departure is recorded by the next sweep that reaches presence; each holds a reference.
        self.unrecorded_drops: dict[str, str] = {}
        # Local sockets, pending grace timers and unrecorded drops: the room is dropped when none are left.
        self.refs = 0
        self.loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handler: Handler | None = None

    # --- cache ---------------------------------------------------------------------------

    def load(self, snapshot: dict[str, str]) -> None:
        """Fill the cache from the store (events already applied win if newer)."""
        for name, raw in snapshot.items():
            self.apply(name, raw, Stored.parse(raw).rev)

    def apply(self, name: str, raw: str | None, rev: int) -> bool:
        """Apply one field change if it is newer than what the cache holds."""
        if rev <= self.revs.get(name, 0):
            return False
        self.revs[name] = rev
        if raw is None:
            self.raw.pop(name, None)
            if name.startswith(PARTICIPANT_PREFIX):
                self.records.pop(name[len(PARTICIPANT_PREFIX) :], None)
            return True
        self.raw[name] = raw
        body = Stored.parse(raw).body
        if name.startswith(PARTICIPANT_PREFIX):
            record = ParticipantRecord.from_json(body)
            self.records[record.id] = record
        elif name == CONSULTATION_FIELD:
            self.state = json.loads(body)["state"]
        return True

    def reset(self, name: str, raw: str) -> None:
        """Take the store's value whatever its revision (the store was emptied and refilled)."""
        self.revs.pop(name, None)
        self.apply(name, raw, Stored.parse(raw).rev)

    def forget(self, name: str) -> None:
        """The store says the field is gone (its revision is unknown)."""
        self.raw.pop(name, None)
        if name.startswith(PARTICIPANT_PREFIX):
            self.records.pop(name[len(PARTICIPANT_PREFIX) :], None)

    # --- who sees what -------------------------------------------------------------------

    def host(self) -> ParticipantRecord | None:
        """The host's record, if the host is here."""
        for record in self.records.values():
            if record.role == "host" and record.status != "denied":
                return record
        return None

    def sees_everyone(self, record: ParticipantRecord) -> bool:
        """The host and admitted participants see the whole roster; others see only the host."""
        return record.role == "host" or record.status == "admitted"

    def roster_for(self, record: ParticipantRecord) -> list[ParticipantView]:
        """The participants ``record`` may know about (never itself, never the denied)."""
        everyone = self.sees_everyone(record)
        return [
            other.view()
            for other in self.records.values()
            if other.id != record.id and other.status != "denied" and (everyone or other.role == "host")
        ]

    def admitted_peers(self, participant_id: str) -> list[ParticipantView]:
        """The others currently admitted (whom an admitted participant makes calls to)."""
        return [r.view() for r in self.records.values() if r.id != participant_id and r.status == "admitted"]
