"""The signalling hub: one per server process, serving every signalling socket.

A socket's life: ``hello`` within the hello timeout (:mod:`admission` authenticates and
authorises it, once), then a read loop where each frame is checked for size, rate and
schema, and handed to the part of the hub whose idea it is:

* offers, answers and ICE — relayed here (the hot path: two dictionary look-ups decide
  whether sender and recipient are admitted in the same consultation; a local recipient
  gets the frame queued directly, a remote one through the bus);
* admit, deny, return, start, end — :mod:`admission`;
* posture — :mod:`attestation`;
* leave, and the socket closing — :mod:`departure`;
* Redis trouble (the bus interrupted, presence emptied) — :mod:`recovery`.

State lives in :mod:`presence` (shared by the nodes) and reaches sockets through
:mod:`roster`. docs/protocol.md describes the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.websockets import WebSocket

from server.ops.metrics import Metrics
from server.signalling.admission import Admission
from server.signalling.attestation import Attestation
from server.signalling.bus import Bus
from server.signalling.connection import BINARY, Connection
from server.signalling.context import HubContext
from server.signalling.departure import Departures
from server.signalling.ice import IceRenewal
from server.signalling.limits import SignallingLimits
from server.signalling.ports import AuditSink, Consultations, IceProvider, PostureVerifier, Refusal
from server.signalling.presence import ParticipantRecord, Presence
from server.signalling.protocol import (
    RELAY_TYPES,
    CloseCode,
    ErrorCode,
    Hello,
    Pong,
    ProtocolError,
    parse_client_message,
    relay_frame,
)
from server.signalling.recovery import Recovery
from server.signalling.room import Room
from server.signalling.roster import Roster, dumps

log = logging.getLogger("telemed.signalling")

Handler = Callable[[Connection, Room, Any], Coroutine[Any, Any, None]]


class Hub:
    """All signalling sockets of one server process (see module docstring)."""

    def __init__(
        self,
        *,
        bus: Bus,
        presence: Presence,
        consultations: Consultations,
        posture: PostureVerifier,
        audit: AuditSink,
        ice: IceProvider,
        limits: SignallingLimits | None = None,
        metrics: Metrics | None = None,
        prefix: str = "telemed",
        node_id: str | None = None,
        sweep_interval_s: float = 5.0,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.ctx = HubContext(
            node_id=node_id or uuid.uuid4().hex[:12],
            prefix=prefix,
            limits=limits or SignallingLimits(),
            bus=bus,
            presence=presence,
            consultations=consultations,
            posture=posture,
            audit=audit,
            ice=ice,
            metrics=metrics,
        )
        self.roster = Roster(self.ctx)
        self.attestation = Attestation(self.ctx, self.roster)
        self.ice = IceRenewal(self.ctx)
        self.roster.before_admitted = self.ice.before_admitted
        self.admission = Admission(self.ctx, self.roster, self.attestation, self.ice)
        self.departures = Departures(self.ctx, self.roster, self.admission)
        self.roster.on_remote_change = self.departures.on_remote_change
        self.recovery = Recovery(self.ctx, self.roster)
        self.roster.on_field_missing = self.recovery.check
        self.recovery.on_presence_lost = lambda: self.departures.distrust_heartbeats(2 * sweep_interval_s + 1)
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_interval_s = sweep_interval_s
        self._on_close = on_close
        self._started = False
        self._handlers: dict[str, Handler] = {
            "ping": self._ping,
            "hello": self._second_hello,
            "leave": self.departures.leave,
            "admit": self.admission.admit,
            "deny": self.admission.deny,
            "return_to_waiting": self.admission.return_to_waiting,
            "start": self._with_presence(self.admission.start),
            "end": self._with_presence(self.admission.end),
            "posture": self.attestation.renew,
        }

    @property
    def node_id(self) -> str:
        """This process's id in presence and on the bus."""
        return self.ctx.node_id

    @property
    def limits(self) -> SignallingLimits:
        """The limits enforced on every socket."""
        return self.ctx.limits

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the bus and the audit writer; start the presence sweeper."""
        if self._started:
            return
        self._started = True
        await self.ctx.audit.start()
        self.ctx.bus.on_recovered(lambda: self.ctx.spawn(self.recovery.resync()))
        await self.ctx.bus.start()
        await self.ctx.bus.subscribe(self.ctx.control_channel, self._on_control)
        await self.ctx.presence.node_heartbeat(self.node_id)
        await self.recovery.check()  # learns the store's epoch
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="signalling-sweeper")

    async def close(self) -> None:
        """Close every socket (1001: come back and resume, maybe on another node) and stop."""
        if not self._started:
            return
        self._started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for room in list(self.roster.rooms.values()):
            for conn in list(room.local.values()):
                conn.close(CloseCode.GOING_AWAY, "server shutting down")
            for timer in room.grace_timers.values():
                timer.cancel()
        tasks, self.ctx.tasks = set(self.ctx.tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.ctx.bus.unsubscribe(self.ctx.control_channel, self._on_control)
        await self.ctx.bus.close()
        await self.ctx.presence.close()
        await self.ctx.audit.close()
        if self._on_close is not None:
            await self._on_close()

    async def ping(self) -> None:
        """Readiness: the bus and presence answer."""
        await self.ctx.bus.ping()
        await self.ctx.presence.ping()

    # --- for other features ----------------------------------------------------------------

    async def suspend_device(self, device_id: str, reason: str) -> None:
        """Suspend a device in every call it is in, on every node (its posture check failed)."""
        await self.attestation.suspend_device_here(device_id, reason)
        await self.ctx.bus.publish(
            self.ctx.control_channel,
            dumps({"k": "suspend", "n": self.node_id, "device": device_id, "why": reason}),
        )

    async def consultation_ended(self, consultation_id: str, reason: str) -> None:
        """The consultation was ended outside a socket (REST, system): tell and close its sockets."""
        self._ended_here(consultation_id, reason)
        await self.ctx.bus.publish(
            self.ctx.control_channel,
            dumps({"k": "ended", "n": self.node_id, "cid": consultation_id, "why": reason}),
        )

    def participants(self, consultation_id: str) -> list[ParticipantRecord]:
        """The records this node holds for a consultation (diagnostics and tests)."""
        room = self.roster.rooms.get(consultation_id)
        return list(room.records.values()) if room else []

    @property
    def connection_count(self) -> int:
        """Sockets joined on this node."""
        return sum(len(room.local) for room in self.roster.rooms.values())

    def _ended_here(self, consultation_id: str, reason: str) -> None:
        room = self.roster.rooms.get(consultation_id)
        if room is not None and room.state != "ended":
            room.state = "ended"
            self.roster.consultation_event(room, "ended", reason)

    def _on_control(self, data: bytes) -> None:
        envelope = json.loads(data)
        if envelope.get("n") == self.node_id:
            return
        if envelope.get("k") == "suspend":
            self.ctx.spawn(self.attestation.suspend_device_here(envelope["device"], envelope["why"]))
        elif envelope.get("k") == "ended":
            self._ended_here(envelope["cid"], envelope["why"])

    # --- one socket ----------------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        """Run one signalling socket from accept to close."""
        await websocket.accept()
        conn = Connection(websocket, self.limits)
        conn.start()
        metrics = self.ctx.metrics
        if metrics is not None:
            metrics.ws_connections.inc()
        try:
            room = await self._handshake(conn)
            if room is not None:
                await self._read_loop(conn, room)
        except Exception:
            log.exception("signalling socket failed", extra={"conn": conn.id})
            conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            try:
                await self.departures.socket_gone(conn)
            except Exception:
                log.warning("could not record a signalling socket's departure", exc_info=True)
            await conn.finish()
            if metrics is not None:
                metrics.ws_connections.dec()

    async def _handshake(self, conn: Connection) -> Room | None:
        timeout = self.limits.hello_timeout.total_seconds()
        try:
            raw = await asyncio.wait_for(conn.receive(), timeout)
        except TimeoutError:
            self.ctx.count("hello", "timeout")
            conn.error(ErrorCode.HELLO_TIMEOUT, f"Send hello within {timeout:g} s")
            conn.close(CloseCode.HELLO_TIMEOUT, ErrorCode.HELLO_TIMEOUT.value)
            return None
        if raw is None:
            return None
        if raw is BINARY or not isinstance(raw, str):
            return self._refuse_hello(conn, ErrorCode.BINARY_NOT_SUPPORTED, "Send text frames only")
        if len(raw) > self.limits.max_message_bytes:
            return self._refuse_hello(conn, ErrorCode.MESSAGE_TOO_LARGE, "The hello is too large")
        try:
            message = parse_client_message(raw)
        except ProtocolError as exc:
            return self._refuse_hello(conn, exc.code, exc.message, exc.ref)
        if not isinstance(message, Hello):
            return self._refuse_hello(
                conn, ErrorCode.HELLO_REQUIRED, "The first message must be hello", message.id
            )
        try:
            room = await self.admission.join(conn, message)
        except Refusal as refusal:
            self.ctx.count("hello", refusal.code.value)
            conn.error(refusal.code, refusal.message, message.id)
            conn.close(refusal.close or CloseCode.FORBIDDEN, refusal.code.value)
            return None
        self.ctx.count("hello", "ok")
        return room

    def _refuse_hello(
        self, conn: Connection, code: ErrorCode, message: str, ref: str | None = None
    ) -> Room | None:
        self.ctx.count("hello", code.value)
        conn.error(code, message, ref)
        conn.close(CloseCode.PROTOCOL_ERROR, code.value)
        return None

    async def _read_loop(self, conn: Connection, room: Room) -> None:
        limits = self.limits
        handlers = self._handlers
        while True:
            raw = await conn.receive()
            if raw is None:
                return
            if conn.closing:
                continue
            if not isinstance(raw, str):
                self._reject(conn, "binary", ErrorCode.BINARY_NOT_SUPPORTED, "Send text frames only")
                continue
            # Characters first (free); bytes only when the text could be too long.
            if len(raw) * 4 > limits.max_message_bytes and len(raw.encode()) > limits.max_message_bytes:
                self._reject(
                    conn,
                    "unknown",
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"Messages are limited to {limits.max_message_bytes} bytes",
                )
                continue
            if not conn.rate.take():
                self._reject(conn, "unknown", ErrorCode.RATE_LIMITED, "Too many messages; slow down")
                continue
            try:
                message = parse_client_message(raw)
            except ProtocolError as exc:
                self._reject(conn, "invalid", exc.code, exc.message, exc.ref)
                continue
            try:
                if message.type in RELAY_TYPES:
                    await self._relay(conn, room, message, raw)
                    continue
                await handlers[message.type](conn, room, message)
            except Refusal as refusal:
                self._reject(conn, message.type, refusal.code, refusal.message, message.id)
                if refusal.code is ErrorCode.SERVICE_UNAVAILABLE and refusal.close is not None:
                    conn.close(refusal.close, refusal.code.value)
                continue
            self.ctx.count(message.type, "ok")

    def _reject(
        self, conn: Connection, kind: str, code: ErrorCode, message: str, ref: str | None = None
    ) -> None:
        """Answer a refused message with an error; close a socket that keeps sending bad ones."""
        self.ctx.count(kind, code.value)
        conn.error(code, message, ref)
        if not conn.error_budget.take():
            conn.error(ErrorCode.TOO_MANY_ERRORS, "Too many refused messages; closing")
            conn.close(CloseCode.TOO_MANY_ERRORS, ErrorCode.TOO_MANY_ERRORS.value)

    # --- the hot path ----------------------------------------------------------------------

    async def _relay(self, conn: Connection, room: Room, message: Any, raw: str) -> None:
        records = room.records
        me = records.get(conn.participant_id)
        if me is None or me.conn != conn.id:
            self.ctx.count(message.type, "stale")  # a replaced socket still talking
            return
        if me.status != "admitted":
            code = ErrorCode.SUSPENDED if me.status == "suspended" else ErrorCode.NOT_ADMITTED
            raise Refusal(code, f'Cannot send {message.type} in status "{me.status}"')
        target = records.get(message.to)
        if target is None or target.status == "denied" or target.id == me.id:
            raise Refusal(
                ErrorCode.UNKNOWN_PARTICIPANT, f'No participant "{message.to}" in this consultation'
            )
        if target.status != "admitted":
            raise Refusal(ErrorCode.NOT_ADMITTED, f'Participant "{target.id}" is not admitted')
        frame = relay_frame(raw, me.id)
        local = room.local.get(target.id)
        if local is not None and local.id == target.conn:
            local.send(frame)
            self.ctx.count(message.type, "relayed")
        elif target.connected and target.node != self.node_id:
            envelope = {"k": "r", "to": target.id, "c": target.conn, "d": frame}
            await self.ctx.bus.publish(room.channel, dumps(envelope))
            self.ctx.count(message.type, "forwarded")
        else:
            # Reconnecting: after the resume the call layer negotiates a fresh connection.
            self.ctx.count(message.type, "dropped")

    def _with_presence(self, handler: Handler) -> Handler:
        """A command that changes the database before presence: refused up front while Redis is away."""

        async def run(conn: Connection, room: Room, message: Any) -> None:
            await self.roster.reachable()
            await handler(conn, room, message)

        return run

    async def _ping(self, conn: Connection, room: Room, message: Any) -> None:
        conn.send(Pong(ref=message.id).wire())

    async def _second_hello(self, conn: Connection, room: Room, message: Any) -> None:
        raise Refusal(ErrorCode.ALREADY_JOINED, "This socket has already joined")

    # --- sweeper -----------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.recovery.check()
                await self.departures.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("signalling presence sweep failed")

    async def sweep(self) -> None:
        """Run one presence sweep now (see :meth:`Departures.sweep`)."""
        await self.departures.sweep()
