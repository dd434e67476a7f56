"""Posture in the call: checked at join, renewed by ``posture`` messages, suspension when it lapses.

A prison laptop or room endpoint shows a posture token (and a proof made with its device
key over method ``WS``, the socket URL and the join token's jti) in ``hello``, then sends a
fresh one in a ``posture`` message before the current one expires. A lapse, a refusal, or
:meth:`Attestation.suspend_device` (the posture service saw the device fail) suspends the
participant: nothing is relayed to or from it and the others are told. A fresh, good
posture brings it back — the host to admitted, anyone else to the waiting room, since
nobody is admitted but by the host.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from server.signalling.connection import Connection
from server.signalling.context import HubContext
from server.signalling.ports import JoinGrant, PostureGrant, Refusal
from server.signalling.presence import ParticipantRecord, RecordStatus
from server.signalling.protocol import CloseCode, ErrorCode, Hello, Posture, PostureAccepted
from server.signalling.room import Room
from server.signalling.roster import UNCHANGED, Roster

log = logging.getLogger("telemed.signalling")


def socket_url(conn: Connection) -> str:
    """The URL a device signs its proofs for: the socket's, without a query."""
    return str(conn.websocket.url.replace(query=""))


class Attestation:
    """Posture checks for the participants on devices."""

    def __init__(self, ctx: HubContext, roster: Roster) -> None:
        self.ctx = ctx
        self.roster = roster

    async def at_join(self, conn: Connection, grant: JoinGrant, hello: Hello) -> PostureGrant | None:
        """Verify the posture a device shows in ``hello`` (None for specialists and browser hosts)."""
        if grant.role != "room" and grant.device_id is None:
            return None
        if grant.device_id is None:
            raise Refusal(
                ErrorCode.FORBIDDEN, "A room joins from its enrolled device", close=CloseCode.FORBIDDEN
            )
        if not hello.posture_token:
            raise Refusal(
                ErrorCode.POSTURE_REQUIRED,
                "This device must send a posture token and proof in hello",
                close=CloseCode.FORBIDDEN,
            )
        posture = await self.ctx.posture.verify(
            token=hello.posture_token, proof=hello.posture_proof, url=socket_url(conn), nonce=grant.jti
        )
        if posture.device_id != grant.device_id:
            raise Refusal(
                ErrorCode.FORBIDDEN,
                "The posture token is for another device than the join token",
                close=CloseCode.FORBIDDEN,
            )
        return posture

    async def renew(self, conn: Connection, room: Room, message: Posture) -> None:
        """A ``posture`` message: accept and re-arm the lapse check, or refuse and suspend."""
        grant = conn.grant
        assert grant is not None  # noqa: S101 - joined
        if grant.device_id is None:
            raise Refusal(ErrorCode.FORBIDDEN, "Only devices attest their posture")
        try:
            posture = await self.ctx.posture.verify(
                token=message.posture_token,
                proof=message.posture_proof,
                url=socket_url(conn),
                nonce=grant.jti,
            )
            if posture.device_id != grant.device_id:
                raise Refusal(ErrorCode.POSTURE_REFUSED, "The posture token is for another device")
        except Refusal as refusal:
            if refusal.code is ErrorCode.SERVICE_UNAVAILABLE:
                raise  # the server cannot check now (database down): the current posture stands
            await self.suspend(room, grant.participant_id, "posture_refused")
            raise Refusal(ErrorCode.POSTURE_REFUSED, refusal.message) from None
        conn.posture = posture
        self.watch(conn, room)
        conn.send(PostureAccepted(ref=message.id, expires_at=int(posture.expires_at)).wire())
        me = room.records.get(grant.participant_id)
        if me is not None and me.status == "suspended":
            await self._reinstate(room, conn)

    def watch(self, conn: Connection, room: Room) -> None:
        """Suspend the participant when its current posture token expires, unless renewed."""
        conn.stop_posture_timer()
        posture = conn.posture
        if posture is None:
            return
        delay = max(0.0, posture.expires_at - self.ctx.limits.posture_leeway.total_seconds() - time.time())
        conn.posture_timer = self.ctx.spawn_later(delay, lambda: self._lapsed(conn, room, posture))

    async def _lapsed(self, conn: Connection, room: Room, posture: PostureGrant) -> None:
        if conn.posture is not posture or conn.detached or conn.closing:
            return
        await self.suspend(room, conn.participant_id, "posture_expired")

    async def suspend(self, room: Room, participant_id: str, reason: str) -> None:
        """Stop relaying to and from a participant; tell everyone; audit."""

        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.status not in ("waiting", "admitted"):
                return UNCHANGED
            return current.evolve(status="suspended", since=time.time())

        change = await self.roster.update(room, participant_id, mutate)
        if change is None or change.new is None:
            return
        await self.ctx.record_standing(
            "signalling.suspended",
            room,
            actor=None,
            subject=change.new,
            denied=True,
            detail={"participant": participant_id, "reason": reason},
        )
        await self.roster.announce(room, "suspended", change, reason=reason)
        log.info(
            "participant suspended",
            extra={"consultation_id": room.id, "participant": participant_id, "reason": reason},
        )

    async def _reinstate(self, room: Room, conn: Connection) -> None:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.status != "suspended":
                return UNCHANGED
            status: RecordStatus = "admitted" if current.role == "host" else "waiting"
            return current.evolve(status=status, since=time.time())

        change = await self.roster.update(room, conn.participant_id, mutate)
        if change is None or change.new is None:
            return
        new = change.new
        try:
            # Rights come back only once that is on record.
            await self.ctx.record(
                "signalling.reinstated", room, actor=new, conn=conn, detail={"status": new.status}
            )
        except Refusal:

            def undo(current: ParticipantRecord | None) -> Any:
                if current is None or current.conn != new.conn or current.status != new.status:
                    return UNCHANGED
                return change.old

            await self.roster.update(room, conn.participant_id, undo)
            raise
        event = "admitted" if new.status == "admitted" else "returned"
        await self.roster.announce(room, event, change, reason="posture_restored")

    async def suspend_device_here(self, device_id: str, reason: str) -> None:
        """Suspend ``device_id`` wherever this node holds its socket."""
        for room in list(self.roster.rooms.values()):
            for conn in list(room.local.values()):
                grant = conn.grant
                if grant is not None and grant.device_id == device_id and not conn.detached:
                    await self.suspend(room, grant.participant_id, reason)
