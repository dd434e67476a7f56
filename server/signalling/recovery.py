"""After Redis trouble: put lost presence back, and tell this node's sockets to resync.

Two things can go wrong with Redis, and both end here:

* the bus lost its connection (or a publish failed): whatever was published meanwhile is
  gone — relayed offers/answers/ICE, news of admissions and departures. The bus calls
  :meth:`Recovery.resync` once it reads again.
* Redis restarted empty (presence is short-lived and kept without persistence): every
  consultation's hash is gone. The store's ``epoch`` changes (:meth:`Presence.epoch`);
  the sweeper checks it, so does every resync, and so does a write that finds a field this
  node knew gone from the store (:meth:`Roster.update` waits for the restore, so a resume
  right after the restart keeps its place).

A resync first looks at the epoch. If the store was emptied, this node heartbeats at once
and stops judging other nodes dead by their heartbeats for two sweeps (theirs went with
the store; each sends a new one at its next sweep), then puts back every
field it has cached that is now absent (:meth:`Presence.restore`: only if absent, at a
revision above every one this node has seen, so every cache takes it; the first node to
restore a field wins, the others adopt its value). Otherwise it reloads its cache from the
store. The consultation's state is then checked against the database, which has the last
word (a ``start`` or ``end`` made while presence was away is recorded there). Then each
socket it holds gets ``resync``: its status, the consultation state and the participants it
may see, which the client takes as the truth (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Literal

from server.signalling.context import HubContext
from server.signalling.ports import Refusal
from server.signalling.presence import PresenceUnavailable, Stored
from server.signalling.protocol import Resync
from server.signalling.room import Room
from server.signalling.roster import CLOSED_STATES, Roster, dumps

log = logging.getLogger("telemed.signalling")

Reason = Literal["bus_interrupted", "presence_lost"]


class Recovery:
    """Restores presence and resyncs sockets after Redis trouble (see module docstring)."""

    def __init__(self, ctx: HubContext, roster: Roster) -> None:
        self.ctx = ctx
        self.roster = roster
        self._epoch: str | None = None
        # Set by the hub: Redis came back empty (every node's heartbeat is gone with it).
        self.on_presence_lost: Callable[[], None] | None = None
        # A resync the store was not reachable for: the sweeper tries again.
        self._pending = False
        # One at a time: a reload must not run in the middle of a restore.
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        """Sweeper: resync if the store was emptied since the last look, or a resync is owed."""
        async with self._lock:
            emptied = await self._store_emptied()
            if emptied or self._pending:
                await self._resync_rooms("presence_lost" if emptied else "bus_interrupted")

    async def resync(self) -> None:
        """The bus is back after an interruption: restore what the store lost, then resync sockets."""
        async with self._lock:
            try:
                emptied = await self._store_emptied()
                await self._resync_rooms("presence_lost" if emptied else "bus_interrupted")
            except PresenceUnavailable:
                self._pending = True
                log.warning("signalling resync postponed: presence is not reachable")

    async def _store_emptied(self) -> bool:
        epoch = await self.ctx.presence.epoch(secrets.token_hex(8))
        previous, self._epoch = self._epoch, epoch
        return previous is not None and epoch != previous

    async def _resync_rooms(self, reason: Reason) -> None:
        self._pending = True
        if reason == "presence_lost":
            await self.ctx.presence.node_heartbeat(self.ctx.node_id)
            if self.on_presence_lost is not None:
                self.on_presence_lost()
        rooms = list(self.roster.rooms.values())
        log.warning(
            "signalling resync", extra={"reason": reason, "rooms": len(rooms), "node": self.ctx.node_id}
        )
        for room in rooms:
            if reason == "presence_lost":
                await self._restore(room)
            else:
                await self._reload(room)
            await self._consultation_state(room)
            self._tell_sockets(room, reason)
            self.ctx.count("resync", reason)
        self._pending = False

    async def _restore(self, room: Room) -> None:
        """Put back every cached field the store lost; adopt the value of a node that was first."""
        floor = max(room.revs.values(), default=0)
        for name, raw in list(room.raw.items()):
            body = Stored.parse(raw).body
            result = await self.ctx.presence.restore(room.id, name, body, floor)
            stored = f"{result.rev}|{body}" if result.ok else result.current
            if stored is None:
                continue
            room.reset(name, stored)
            if result.ok:
                await self.ctx.bus.publish(
                    room.channel, dumps({"k": "restored", "n": self.ctx.node_id, "f": name, "s": stored})
                )

    async def _reload(self, room: Room) -> None:
        """Take the store's word for every field (what changed while the bus was away)."""
        snapshot = await self.ctx.presence.snapshot(room.id)
        for name in list(room.raw):
            if name not in snapshot:
                room.forget(name)
        room.load(snapshot)

    async def _consultation_state(self, room: Room) -> None:
        """Catch up with the database: it went live, or ended, while the news could not travel."""
        try:
            facts = await self.ctx.consultations.lookup(room.id)
        except Refusal:
            return  # the database is away too: what we have stands until the next resync
        if facts.state == room.state or (facts.state != "live" and facts.state not in CLOSED_STATES):
            return
        if room.state in CLOSED_STATES:
            return
        await self.roster.set_state(room, facts.state, reason="ended" if facts.state != "live" else None)
        if facts.state in CLOSED_STATES:
            await self.roster.clear(room)

    def _tell_sockets(self, room: Room, reason: Reason) -> None:
        for pid, conn in list(room.local.items()):
            record = room.records.get(pid)
            if record is None or record.conn != conn.id or conn.detached or record.status == "denied":
                continue
            conn.send(
                Resync(
                    reason=reason,
                    status=record.status,
                    consultation_state=room.state,
                    participants=room.roster_for(record),
                ).wire()
            )
