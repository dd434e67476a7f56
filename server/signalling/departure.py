"""Leaving: on purpose (``leave``), by a dropped socket and its grace period, or with a dead node.

A dropped socket marks its participant disconnected and starts the resume grace period;
a resume or a newer socket within it keeps the place. When it runs out the participant
is removed and the others are told ``participant.left`` (reason ``timeout``). Every node
that holds the room runs the timer, so the grace period ends even if the node that held
the socket has gone; the compare-and-set lets exactly one of them remove the record.

Nodes heartbeat in presence; :meth:`Departures.sweep` finds records held by a node whose
heartbeat stopped (it died without closing its sockets) and treats them as dropped. A
socket that closes while presence (Redis) is unreachable cannot be marked disconnected
then: the room keeps it in ``unrecorded_drops`` and the first sweep that reaches presence
again records the drop, so the participant still times out if it does not come back.
"""

from __future__ import annotations

import time
from typing import Any

from server.signalling.admission import Admission
from server.signalling.connection import Connection
from server.signalling.context import HubContext
from server.signalling.ports import Refusal
from server.signalling.presence import ParticipantRecord
from server.signalling.protocol import Ack, CloseCode, Leave
from server.signalling.room import Room
from server.signalling.roster import UNCHANGED, Roster


class Departures:
    """Participants leaving, and the timers that decide they have."""

    def __init__(self, ctx: HubContext, roster: Roster, admission: Admission) -> None:
        self.ctx = ctx
        self.roster = roster
        self.admission = admission
        # Until then (monotonic s) a missing heartbeat proves nothing: Redis came back empty.
        self._heartbeats_from = 0.0

    def distrust_heartbeats(self, for_s: float) -> None:
        """Redis lost every heartbeat: give the other nodes ``for_s`` to send theirs again."""
        self._heartbeats_from = time.monotonic() + for_s

    async def leave(self, conn: Connection, room: Room, message: Leave) -> None:
        """``leave``: gone now, no grace period."""
        conn_id = conn.id

        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.conn != conn_id:
                return UNCHANGED
            return None

        conn.detach()
        try:
            change = await self.roster.update(room, conn.participant_id, mutate)
        except Refusal:
            # Presence is unreachable: gone all the same; the others hear of it (a timeout) later.
            self._defer_drop(room, conn.participant_id, conn_id)
            change = None
        if change is not None and change.old is not None:
            await self.ctx.record_standing(
                "signalling.left", room, actor=change.old, conn=conn, detail={"reason": "left"}
            )
        if message.id:
            conn.send(Ack(ref=message.id).wire())
        conn.close(CloseCode.NORMAL, "left")
        if change is not None and change.old is not None:
            await self.roster.announce(room, "left", change, reason="left")
            if change.old.role == "host":
                await self.admission.host_gone(room)

    async def socket_gone(self, conn: Connection) -> None:
        """The socket closed: keep the place for the grace period (unless it was given up)."""
        grant = conn.grant
        if grant is None:
            return
        conn.stop_timers()
        room = self.roster.rooms.get(grant.consultation_id)
        if room is None:
            return
        if room.local.get(grant.participant_id) is conn:
            del room.local[grant.participant_id]
        try:
            if not conn.detached:
                await self._disconnected(room, grant.participant_id, conn.id)
        except Refusal:
            self._defer_drop(room, grant.participant_id, conn.id)
        finally:
            await self.roster.release(room)

    async def _disconnected(self, room: Room, participant_id: str, conn_id: str) -> None:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.conn != conn_id or not current.connected:
                return UNCHANGED
            if current.status == "denied":
                return UNCHANGED
            return current.evolve(connected=False, since=time.time())

        change = await self.roster.update(room, participant_id, mutate)
        if change is None:
            return
        await self.roster.announce(room, "disconnected", change, reason=None)
        self.start_grace(room, participant_id, conn_id)

    def start_grace(self, room: Room, participant_id: str, conn_id: str, delay: float | None = None) -> None:
        """Remove the participant when the grace period is over, unless it is back by then."""
        if participant_id in room.grace_timers:
            return
        if delay is None:
            delay = self.ctx.limits.resume_grace.total_seconds()
        room.refs += 1
        room.grace_timers[participant_id] = self.ctx.spawn_later(
            delay, lambda: self._grace_over(room, participant_id, conn_id)
        )

    def stop_grace(self, room: Room, participant_id: str) -> None:
        """It is back (here or on another node)."""
        timer = room.grace_timers.pop(participant_id, None)
        if timer is not None:
            timer.cancel()
            self.ctx.spawn(self.roster.release(room))

    async def _grace_over(self, room: Room, participant_id: str, conn_id: str) -> None:
        room.grace_timers.pop(participant_id, None)
        try:
            await self._expire(room, participant_id, conn_id)
        finally:
            await self.roster.release(room)

    async def _expire(self, room: Room, participant_id: str, conn_id: str) -> None:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.conn != conn_id or current.connected or current.status == "denied":
                return UNCHANGED
            return None

        change = await self.roster.update(room, participant_id, mutate)
        if change is None or change.old is None:
            return
        await self.ctx.record_standing(
            "signalling.left", room, actor=change.old, detail={"reason": "timeout"}
        )
        await self.roster.announce(room, "left", change, reason="timeout")
        if change.old.role == "host":
            await self.admission.host_gone(room)

    def _defer_drop(self, room: Room, participant_id: str, conn_id: str) -> None:
        """A socket closed while presence is unreachable: the sweep records it later (the room stays held)."""
        if participant_id not in room.unrecorded_drops:
            room.refs += 1
        room.unrecorded_drops[participant_id] = conn_id

    async def _record_drops(self, room: Room) -> None:
        """Mark disconnected (and time out) the sockets that closed while presence was unreachable."""
        for participant_id, conn_id in list(room.unrecorded_drops.items()):
            await self._disconnected(room, participant_id, conn_id)  # a Refusal: next sweep
            del room.unrecorded_drops[participant_id]
            await self.roster.release(room)

    def on_remote_change(
        self, room: Room, event: str, old: ParticipantRecord | None, new: ParticipantRecord | None
    ) -> None:
        """Another node changed a record: time a disconnect out here too; stop when it is back."""
        if new is None:
            return
        if event == "disconnected":
            self.start_grace(room, new.id, new.conn)
        elif new.connected:
            self.stop_grace(room, new.id)

    async def sweep(self) -> None:
        """Heartbeat; keep rooms alive; treat records of dead nodes as dropped; finish grace periods."""
        presence = self.ctx.presence
        me = self.ctx.node_id
        await presence.node_heartbeat(me)
        rooms = list(self.roster.rooms.values())
        for room in rooms:
            await self._record_drops(room)
        await presence.touch(room.id for room in rooms)
        held = {r.node for room in rooms for r in room.records.values() if r.connected and r.node != me}
        judge = time.monotonic() >= self._heartbeats_from
        alive = await presence.nodes_alive(held) if held and judge else set()
        grace = self.ctx.limits.resume_grace.total_seconds()
        now = time.time()
        for room in rooms:
            for record in list(room.records.values()):
                if record.status == "denied":
                    continue
                if judge and record.connected and record.node != me and record.node not in alive:
                    await self._disconnected(room, record.id, record.conn)
                elif not record.connected and record.id not in room.grace_timers:
                    self.start_grace(room, record.id, record.conn, delay=max(0.0, record.since + grace - now))
