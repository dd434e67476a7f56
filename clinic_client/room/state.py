"""What the room's screen shows: one state at a time, worked out from what the server says.

:class:`Roster` follows the protocol's events for the room's own participant (its status, the
consultation's state, who else is there, the latest TURN servers); :func:`screen_of` turns it
into one of the screens of docs/room.md, and :class:`RoomState` is what the page is sent.
Nothing here knows about patients: a room never learns who the patient is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from clinic_client.signalling import Participant, ServerEvent

Screen = Literal["starting", "idle", "booked", "waiting", "call", "ended", "reconnecting", "unavailable"]
# The consultation's states in which the clinician has opened the call at least once.
_OPENED = frozenset({"open", "live"})


@dataclass(frozen=True)
class Booking:
    """The consultation booked for the room now, as its join ticket describes it."""

    consultation_id: str
    clinician: str
    starts_at: datetime | None
    ends_at: datetime | None


@dataclass
class Roster:
    """The room's place in one consultation, kept current from the signalling events."""

    me: str = ""
    status: str = "connecting"
    consultation_state: str = "scheduled"
    others: dict[str, Participant] = field(default_factory=dict)
    host_seen: bool = False
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    ice_policy: str = "relay"

    def welcome(self, data: Mapping[str, Any]) -> None:
        """A ``welcome`` (the first, a resume's or a new join's): start again from what it says."""
        self.me = str(data.get("participant_id", ""))
        self.status = str(data.get("status", "waiting"))
        self.consultation_state = str(data.get("consultation_state", "scheduled"))
        self.others = {}
        for raw in data.get("participants") or []:
            self._put(Participant.from_wire(raw))
        self._ice(data)
        if self.consultation_state in _OPENED:
            self.host_seen = True

    def apply(self, event: ServerEvent) -> None:
        """One server event (those that change nothing here are ignored)."""
        kind = event.type
        if kind == "admitted":
            self.status = "admitted"
            self.others = {}
            for participant in event.participants:
                self._put(participant)
        elif kind.startswith("participant.") and event.participant is not None:
            if kind in ("participant.left", "participant.denied"):
                self.others.pop(event.participant.id, None)
            else:
                self._put(event.participant)
        elif kind == "returned":
            self.status = "waiting"
            # Waiting, the room hears only about the host: the rest may be stale.
            self.others = {k: p for k, p in self.others.items() if p.role == "host"}
        elif kind in ("suspended", "denied"):
            self.status = kind
        elif kind == "consultation.live":
            self.consultation_state = "live"
            self.host_seen = True
        elif kind == "consultation.ended":
            self.consultation_state = "ended"
        elif kind == "ice_servers":
            self._ice(event.data)

    def _put(self, participant: Participant) -> None:
        if participant.id == self.me:
            return
        self.others[participant.id] = participant
        if participant.role == "host":
            self.host_seen = True

    def _ice(self, data: Mapping[str, Any]) -> None:
        servers = data.get("ice_servers")
        if isinstance(servers, list):
            self.ice_servers = [dict(s) for s in servers if isinstance(s, Mapping)]
        self.ice_policy = "all" if data.get("ice_policy") == "all" else "relay"

    def host_present(self) -> bool:
        """True while the clinician's socket is in the consultation."""
        return any(p.role == "host" and p.connected for p in self.others.values())

    def in_call(self) -> list[Participant]:
        """The admitted others, the clinician first: whom the page connects media with."""
        admitted = [p for p in self.others.values() if p.status == "admitted"]
        return sorted(admitted, key=lambda p: (p.role != "host", p.id))


def screen_of(roster: Roster) -> Screen:
    """The one screen for where the room is in its consultation."""
    if roster.consultation_state == "ended" or roster.status == "denied":
        return "ended"
    if roster.status == "admitted":
        return "call"
    if roster.status == "suspended":
        return "reconnecting"
    if roster.host_present() or roster.host_seen:
        return "waiting"
    return "booked"


@dataclass(frozen=True)
class RoomState:
    """One state of the screen: what the page is sent as ``room.state`` (never a token)."""

    screen: Screen
    booking: Booking | None = None
    reason: str | None = None
    roster: Roster | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ``room.state`` message (docs/room.md)."""
        booking = self.booking
        call = None
        roster = self.roster
        # Media goes on through a short loss of the server link: the page keeps the call.
        if roster is not None and roster.status == "admitted" and self.screen in ("call", "reconnecting"):
            call = {
                "me": roster.me,
                "others": [
                    {"id": p.id, "role": p.role, "name": p.name, "connected": p.connected}
                    for p in roster.in_call()
                ],
                "ice_servers": roster.ice_servers,
                "ice_policy": roster.ice_policy,
            }
        return {
            "type": "room.state",
            "screen": self.screen,
            "reason": self.reason,
            "clinician": booking.clinician if booking else None,
            "starts_at": booking.starts_at.isoformat() if booking and booking.starts_at else None,
            "call": call,
        }
