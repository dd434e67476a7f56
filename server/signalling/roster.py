"""The rooms this node holds, how their records change, and how every change reaches the sockets.

A change is a compare-and-set on :mod:`presence` (:meth:`Roster.update`), applied to the
local cache at once, turned into messages for this node's sockets (:meth:`Roster.dispatch`)
and published on the consultation's bus channel, where the other nodes do the same with
it. Events a node receives are applied only if newer than its cache (revision order).

Who is told what:

* the subject of a change gets a message about itself (``admitted``, preceded by fresh TURN
  credentials if its renewal fell due while it was out, ``denied`` + close, ``returned``,
  ``suspended``; a newer socket elsewhere means ``replaced`` + close);
* the host and admitted participants get ``participant.<event>`` about anyone;
* waiting and suspended participants only hear about the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from server.signalling.connection import Connection
from server.signalling.context import HubContext
from server.signalling.ports import Refusal
from server.signalling.presence import (
    CONSULTATION_FIELD,
    PARTICIPANT_PREFIX,
    ParticipantRecord,
    PresenceUnavailable,
    Stored,
)
from server.signalling.protocol import (
    Admitted,
    CloseCode,
    ConsultationEvent,
    ConsultationState,
    Denied,
    ErrorCode,
    ParticipantEvent,
    ParticipantEventType,
    Replaced,
    Returned,
    Suspended,
)
from server.signalling.room import Room

CLOSED_STATES: Final = frozenset({"ended", "cancelled", "no_show"})
UNCHANGED: Final = object()
Mutation = Callable[[ParticipantRecord | None], Any]
RemoteChange = Callable[[Room, str, ParticipantRecord | None, ParticipantRecord | None], None]

# Internal event names -> what the subject's observers are told.
EVENT_TYPES: dict[str, ParticipantEventType] = {
    "joined": "participant.joined",
    "resumed": "participant.resumed",
    "admitted": "participant.admitted",
    "denied": "participant.denied",
    "returned": "participant.returned",
    "suspended": "participant.suspended",
    "disconnected": "participant.disconnected",
    "left": "participant.left",
}


@dataclass(frozen=True)
class Change:
    """A participant record change this node made."""

    old: ParticipantRecord | None
    new: ParticipantRecord | None
    rev: int


def dumps(envelope: dict[str, Any]) -> bytes:
    """A bus envelope."""
    return json.dumps(envelope, separators=(",", ":")).encode()


class Roster:
    """The consultations this node has sockets (or pending grace periods) in."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx
        self.rooms: dict[str, Room] = {}
        # Set by the hub: what else to do when another node changed a record.
        self.on_remote_change: RemoteChange | None = None
        # Set by the hub: what to send a socket just before it is told it is admitted.
        self.before_admitted: Callable[[Connection, Room], None] | None = None
        # Set by the hub: a field this node knew is gone from the store (restore it if Redis was emptied).
        self.on_field_missing: Callable[[], Awaitable[None]] | None = None

    # --- rooms ---------------------------------------------------------------------------

    async def acquire(self, consultation_id: str) -> Room:
        """The room, subscribed and loaded; every acquire needs a :meth:`release`."""
        room = self.rooms.get(consultation_id)
        if room is not None:
            room.refs += 1
            try:
                await asyncio.shield(room.loaded)
            except Exception as exc:
                raise _presence_down() from exc
            return room
        room = Room(consultation_id, channel=self.ctx.room_channel(consultation_id))
        room.refs = 1
        self.rooms[consultation_id] = room

        def handler(data: bytes) -> None:
            self._on_room_message(room, data)

        room.handler = handler
        try:
            await self.ctx.bus.subscribe(room.channel, handler)
            room.load(await self.ctx.presence.snapshot(consultation_id))
        except Exception as exc:
            self.rooms.pop(consultation_id, None)
            room.loaded.set_exception(exc)
            room.loaded.exception()  # retrieved: waiters raise their own refusal
            with contextlib.suppress(Exception):
                await self.ctx.bus.unsubscribe(room.channel, handler)
            raise _presence_down() from exc
        room.loaded.set_result(None)
        return room

    async def release(self, room: Room) -> None:
        """Drop one reference; the last one unsubscribes and forgets the room."""
        room.refs -= 1
        if room.refs > 0 or self.rooms.get(room.id) is not room:
            return
        del self.rooms[room.id]
        if room.handler is not None:
            with contextlib.suppress(Exception):
                await self.ctx.bus.unsubscribe(room.channel, room.handler)

    # --- changes -------------------------------------------------------------------------

    async def update(self, room: Room, participant_id: str, mutate: Mutation) -> Change | None:
        """Compare-and-set one participant's record; None when ``mutate`` returns :data:`UNCHANGED`.

        ``mutate`` sees the stored record (or None) and returns the new one, None to
        delete it, or UNCHANGED; it may raise :class:`Refusal`. It runs again if another
        writer got in first. An unreachable store is a ``service_unavailable`` refusal:
        nothing changed, the socket stays, the command may be sent again.
        """
        try:
            return await self._update(room, participant_id, mutate)
        except PresenceUnavailable:
            raise _presence_unreachable() from None

    async def _update(self, room: Room, participant_id: str, mutate: Mutation) -> Change | None:
        name = PARTICIPANT_PREFIX + participant_id
        expected = room.raw.get(name)
        checked = False
        for _ in range(16):
            current = ParticipantRecord.from_json(Stored.parse(expected).body) if expected else None
            try:
                new = mutate(current)
            except Refusal:
                # The cache may lag behind another node's change: refuse on the stored record only.
                if checked:
                    raise
                checked = True
                stored = await self.ctx.presence.get(room.id, name)
                if stored == expected:
                    raise
                expected = await self._settle(room, name, expected, stored)
                continue
            if new is UNCHANGED:
                return None
            body = new.to_json() if new is not None else None
            result = await self.ctx.presence.cas(room.id, name, expected, body)
            if result.ok:
                room.apply(name, f"{result.rev}|{body}" if body is not None else None, result.rev)
                return Change(old=current, new=new, rev=result.rev)
            expected = await self._settle(room, name, expected, result.current)
            checked = True
        raise Refusal(ErrorCode.SERVICE_UNAVAILABLE, "Presence is busy; try again")

    async def _settle(self, room: Room, name: str, expected: str | None, stored: str | None) -> str | None:
        """Adopt what the store holds; a field we knew that is gone may mean Redis came back empty,
        so recovery gets to put presence back first (else a resume would land in the waiting room)."""
        if stored is None and expected is not None and self.on_field_missing is not None:
            await self.on_field_missing()
            stored = await self.ctx.presence.get(room.id, name)
        return self._refresh(room, name, stored)

    @staticmethod
    def _refresh(room: Room, name: str, stored: str | None) -> str | None:
        if stored is None:
            room.forget(name)
        else:
            room.apply(name, stored, Stored.parse(stored).rev)
        return stored

    async def reachable(self) -> None:
        """Refuse (``service_unavailable``) now if presence cannot be reached."""
        try:
            await self.ctx.presence.ping()
        except Exception:
            raise _presence_unreachable() from None

    async def set_state(
        self, room: Room, state: str, *, reason: str | None, ack: tuple[Connection, str] | None = None
    ) -> None:
        """Record the consultation's new state and tell everyone (``live``, ``ended``); ``ack`` after.

        The database has the new state already: if presence cannot be reached, this node's
        sockets are told anyway, and the other nodes learn it from the database when they
        resync (:mod:`server.signalling.recovery`).
        """
        body = json.dumps({"state": state})
        expected = room.raw.get(CONSULTATION_FIELD)
        for _ in range(8):
            try:
                result = await self.ctx.presence.cas(room.id, CONSULTATION_FIELD, expected, body)
            except PresenceUnavailable:
                room.state = cast(ConsultationState, state)
                self.consultation_event(room, state, reason, ack=ack)
                return
            if result.ok:
                raw = f"{result.rev}|{body}"
                room.apply(CONSULTATION_FIELD, raw, result.rev)
                self.consultation_event(room, state, reason, ack=ack)
                await self.ctx.bus.publish(
                    room.channel,
                    dumps({"k": "cs", "n": self.ctx.node_id, "r": result.rev, "s": raw, "why": reason}),
                )
                return
            expected = result.current
        raise Refusal(ErrorCode.SERVICE_UNAVAILABLE, "Presence is busy; try again")

    async def clear(self, room: Room) -> None:
        """After the end: drop the participant records quietly (everyone has been told)."""
        for name, raw in list(room.raw.items()):
            if name.startswith(PARTICIPANT_PREFIX):
                with contextlib.suppress(Exception):
                    await self.ctx.presence.cas(room.id, name, raw, None)
                room.forget(name)

    # --- telling people ------------------------------------------------------------------

    async def announce(
        self,
        room: Room,
        event: str,
        change: Change,
        *,
        reason: str | None,
        skip: Connection | None = None,
    ) -> None:
        """Tell this node's sockets about a change, then the other nodes."""
        self.dispatch(room, event, change.old, change.new, reason, skip=skip)
        subject = change.new or change.old
        assert subject is not None  # noqa: S101 - a change has a before or an after
        name = PARTICIPANT_PREFIX + subject.id
        await self.ctx.bus.publish(
            room.channel,
            dumps(
                {
                    "k": "p",
                    "n": self.ctx.node_id,
                    "f": name,
                    "r": change.rev,
                    "s": room.raw.get(name) if change.new is not None else None,
                    "e": event,
                    "why": reason,
                    "old": change.old.to_json() if change.old is not None else None,
                }
            ),
        )

    def dispatch(
        self,
        room: Room,
        event: str,
        old: ParticipantRecord | None,
        new: ParticipantRecord | None,
        reason: str | None,
        *,
        skip: Connection | None = None,
    ) -> None:
        """Turn one record change into messages for the sockets this node holds."""
        subject = new or old
        if subject is None:
            return
        mine = room.local.get(subject.id)
        if mine is not None and mine is not skip:
            if new is not None and new.conn != mine.id:
                room.local.pop(subject.id, None)
                replace(mine)
            elif new is not None:
                self._tell_subject(room, mine, event, new, reason)
        kind = EVENT_TYPES.get(event)
        if kind is None:
            return
        frame = ParticipantEvent(type=kind, participant=subject.view(), reason=reason).wire()
        for pid, conn in room.local.items():
            if pid == subject.id or conn is skip or conn.detached:
                continue
            viewer = room.records.get(pid)
            if viewer is not None and (subject.role == "host" or room.sees_everyone(viewer)):
                conn.send(frame)

    def _tell_subject(
        self, room: Room, conn: Connection, event: str, record: ParticipantRecord, reason: str | None
    ) -> None:
        if event == "admitted":
            if self.before_admitted is not None:
                self.before_admitted(conn, room)
            conn.send(Admitted(participants=room.roster_for(record)).wire())
        elif event == "denied":
            conn.detach()
            conn.send(Denied(reason=reason).wire())
            conn.close(CloseCode.FORBIDDEN, "denied")
        elif event == "returned":
            conn.send(Returned(reason=reason).wire())
        elif event == "suspended":
            conn.send(Suspended(reason=reason or "suspended").wire())

    def consultation_event(
        self, room: Room, state: str, reason: str | None, *, ack: tuple[Connection, str] | None = None
    ) -> None:
        """Tell this node's sockets the consultation went live, or ended (and close them).

        ``ack`` (a socket and its frame) is queued after that socket's event and before its
        close: a command's effects come before its ``ack`` (docs/protocol.md, Ordering).
        """
        if state == "live":
            frame = ConsultationEvent(type="consultation.live").wire()
            for conn in room.local.values():
                conn.send(frame)
        elif state in CLOSED_STATES:
            frame = ConsultationEvent(type="consultation.ended", reason=reason).wire()
            for conn in list(room.local.values()):
                conn.detach()
                conn.send(frame)
                if ack is not None and ack[0] is conn:
                    conn.send(ack[1])
                conn.close(CloseCode.CONSULTATION_CLOSED, "consultation_ended")
        if ack is not None and not ack[0].closing:
            ack[0].send(ack[1])  # not among this room's sockets, or not a closing state

    # --- from other nodes ----------------------------------------------------------------

    def _on_room_message(self, room: Room, data: bytes) -> None:
        envelope = json.loads(data)
        kind = envelope.get("k")
        if kind == "r":
            # A relayed frame for a participant this node holds.
            conn = room.local.get(envelope["to"])
            record = room.records.get(envelope["to"])
            if conn is not None and record is not None and record.conn == conn.id == envelope["c"]:
                if record.status == "admitted":
                    conn.send(envelope["d"])
            return
        if envelope.get("n") == self.ctx.node_id:
            return  # our own change: applied and dispatched already
        if kind == "p":
            name = envelope["f"]
            pid = name[len(PARTICIPANT_PREFIX) :]
            old = room.records.get(pid)
            if old is None and envelope.get("old"):
                old = ParticipantRecord.from_json(envelope["old"])
            if room.apply(name, envelope["s"], envelope["r"]):
                new = room.records.get(pid)
                self.dispatch(room, envelope["e"], old, new, envelope.get("why"))
                if self.on_remote_change is not None:
                    self.on_remote_change(room, envelope["e"], old, new)
        elif kind == "cs" and room.apply(CONSULTATION_FIELD, envelope["s"], envelope["r"]):
            self.consultation_event(room, room.state, envelope.get("why"))
        elif kind == "restored":
            # Another node put a field back after Redis lost it: the same content, a new revision.
            room.reset(envelope["f"], envelope["s"])


def replace(conn: Connection) -> None:
    """Another socket took this participant over: say so and close (4409)."""
    conn.detach()
    conn.send(Replaced().wire())
    conn.close(CloseCode.REPLACED, "replaced")


def _presence_unreachable() -> Refusal:
    return Refusal(ErrorCode.SERVICE_UNAVAILABLE, "Signalling presence is not reachable; try again")


def _presence_down() -> Refusal:
    return Refusal(
        ErrorCode.SERVICE_UNAVAILABLE,
        "Signalling presence is not reachable; try again",
        close=CloseCode.TRY_AGAIN_LATER,
    )
