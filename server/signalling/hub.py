"""The signalling hub: join, waiting room, relay, resume, posture during a call, end.

Rules (docs/protocol.md has the wire view):

* A socket's first message is ``hello`` (join token; posture token and proof for devices;
  maybe a resume token) within the hello timeout. Authentication and authorisation happen
  here, once: the join token says who and where, the consultation must be joinable, a
  device must show a good posture. After that every message is checked only for size,
  rate, schema and membership — all in memory.
* Everyone but the host waits until the host admits them; nobody is admitted by default,
  whenever the host arrives. The host admits, denies (the socket closes, no SDP ever
  reaches it), returns to waiting, starts and ends.
* Offers, answers and ICE go only from an admitted participant to another admitted one
  of the same consultation.
* A dropped socket keeps its place for the resume grace period; ``hello`` with the resume
  token within it gets the place back (a new resume token each time: single use). A new
  socket for the same participant replaces the old one. After the grace period the others
  are told the participant left; when the host leaves, the admitted go back to waiting.
* A device whose posture lapses or is refused is suspended: nothing is relayed to or from
  it until a fresh posture token brings it back (the host to admitted, others to waiting).

State lives in :mod:`presence` (shared by the nodes); changes are broadcast on the
consultation's :mod:`bus` channel as events; each node turns events into messages for the
sockets it holds. Relayed messages go straight to a local socket, or over the bus to the
node holding the recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import Counter
from starlette.websockets import WebSocket

from server.ops.metrics import Metrics
from server.signalling.bus import Bus
from server.signalling.connection import BINARY, Connection
from server.signalling.limits import SignallingLimits
from server.signalling.ports import (
    AuditRecord,
    AuditSink,
    Consultations,
    IceProvider,
    JoinGrant,
    PostureGrant,
    PostureVerifier,
    Refusal,
)
from server.signalling.presence import (
    CONSULTATION_FIELD,
    PARTICIPANT_PREFIX,
    ParticipantRecord,
    Presence,
    RecordStatus,
    Stored,
)
from server.signalling.protocol import (
    Ack,
    Admit,
    Admitted,
    CloseCode,
    ConsultationEvent,
    Denied,
    Deny,
    End,
    ErrorCode,
    Hello,
    LimitsView,
    ParticipantEvent,
    ParticipantEventType,
    Pong,
    Posture,
    PostureAccepted,
    ProtocolError,
    Replaced,
    Returned,
    ReturnToWaiting,
    Suspended,
    Welcome,
    parse_client_message,
    relay_frame,
)
from server.signalling.room import Room

log = logging.getLogger("telemed.signalling")

CLOSED_STATES: Final = frozenset({"ended", "cancelled", "no_show"})
_UNCHANGED: Final = object()
Mutation = Callable[[ParticipantRecord | None], Any]

# Internal event names -> what the subject's observers are told.
_EVENT_TYPES: dict[str, ParticipantEventType] = {
    "joined": "participant.joined",
    "resumed": "participant.resumed",
    "admitted": "participant.admitted",
    "denied": "participant.denied",
    "returned": "participant.returned",
    "suspended": "participant.suspended",
    "disconnected": "participant.disconnected",
    "left": "participant.left",
}


def hash_resume_token(token: str) -> str:
    """What presence keeps of a resume token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    """A participant record change this node made."""

    old: ParticipantRecord | None
    new: ParticipantRecord | None
    rev: int


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
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.limits = limits or SignallingLimits()
        self._bus = bus
        self._presence = presence
        self._consultations = consultations
        self._posture = posture
        self._audit = audit
        self._ice = ice
        self._metrics = metrics
        self._prefix = prefix
        self._control = f"{prefix}:sig:ctl"
        self._rooms: dict[str, Room] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_interval_s = sweep_interval_s
        self._counters: dict[tuple[str, str], Any] = {}
        self._started = False
        self._on_close = on_close
        self._handlers: dict[str, Callable[[Connection, Room, Any], Coroutine[Any, Any, None]]] = {
            "offer": self._relay,
            "answer": self._relay,
            "ice": self._relay,
            "ping": self._ping,
            "hello": self._second_hello,
            "leave": self._leave,
            "admit": self._admit,
            "deny": self._deny,
            "return_to_waiting": self._return_to_waiting,
            "start": self._start,
            "end": self._end,
            "posture": self._posture_message,
        }

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the bus and the audit writer; start the presence sweeper."""
        if self._started:
            return
        self._started = True
        await self._audit.start()
        await self._bus.start()
        await self._bus.subscribe(self._control, self._on_control)
        await self._presence.node_heartbeat(self.node_id)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="signalling-sweeper")

    async def close(self) -> None:
        """Close every socket (1001: reconnect and resume elsewhere) and stop."""
        if not self._started:
            return
        self._started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for room in list(self._rooms.values()):
            for conn in list(room.local.values()):
                conn.close(CloseCode.GOING_AWAY, "server shutting down")
            for timer in room.grace_timers.values():
                timer.cancel()
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._bus.unsubscribe(self._control, self._on_control)
        await self._bus.close()
        await self._presence.close()
        await self._audit.close()
        if self._on_close is not None:
            await self._on_close()

    async def ping(self) -> None:
        """Readiness: the bus and presence answer."""
        await self._bus.ping()
        await self._presence.ping()

    # --- public API for other features ---------------------------------------------------

    async def suspend_device(self, device_id: str, reason: str) -> None:
        """Suspend a device in every call it is in, on every node (posture failed)."""
        await self._suspend_device_here(device_id, reason)
        await self._bus.publish(
            self._control,
            _dumps({"k": "suspend", "n": self.node_id, "device": device_id, "why": reason}),
        )

    async def consultation_ended(self, consultation_id: str, reason: str) -> None:
        """The consultation was ended elsewhere (REST, system): tell and close its sockets."""
        await self._ended_elsewhere(consultation_id, reason)
        await self._bus.publish(
            self._control,
            _dumps({"k": "ended", "n": self.node_id, "cid": consultation_id, "why": reason}),
        )

    def participants(self, consultation_id: str) -> list[ParticipantRecord]:
        """The records this node holds for a consultation (diagnostics and tests)."""
        room = self._rooms.get(consultation_id)
        return list(room.records.values()) if room else []

    @property
    def connection_count(self) -> int:
        """Sockets joined on this node."""
        return sum(len(room.local) for room in self._rooms.values())

    # --- one socket ----------------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        """Run one signalling socket from accept to close."""
        await websocket.accept()
        conn = Connection(websocket, self.limits)
        conn.start()
        if self._metrics is not None:
            self._metrics.ws_connections.inc()
        try:
            room = await self._handshake(conn)
            if room is not None:
                await self._read_loop(conn, room)
        except Exception:
            log.exception("signalling socket failed", extra={"conn": conn.id})
            conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            try:
                await self._socket_gone(conn)
            except Exception:
                log.warning("could not record a signalling socket's departure", exc_info=True)
            await conn.finish()
            if self._metrics is not None:
                self._metrics.ws_connections.dec()

    async def _handshake(self, conn: Connection) -> Room | None:
        timeout = self.limits.hello_timeout.total_seconds()
        try:
            raw = await asyncio.wait_for(conn.receive(), timeout)
        except TimeoutError:
            self._count("hello", "timeout")
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
            room = await self._join(conn, message)
        except Refusal as refusal:
            self._count("hello", refusal.code.value)
            conn.error(refusal.code, refusal.message, message.id)
            conn.close(refusal.close or CloseCode.FORBIDDEN, refusal.code.value)
            return None
        self._count("hello", "ok")
        return room

    def _refuse_hello(
        self, conn: Connection, code: ErrorCode, message: str, ref: str | None = None
    ) -> Room | None:
        self._count("hello", code.value)
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
                await handlers[message.type](conn, room, message)
            except Refusal as refusal:
                self._reject(conn, message.type, refusal.code, refusal.message, message.id)
                if refusal.close is not None and refusal.code is ErrorCode.SERVICE_UNAVAILABLE:
                    conn.close(refusal.close, refusal.code.value)

    def _reject(
        self, conn: Connection, kind: str, code: ErrorCode, message: str, ref: str | None = None
    ) -> None:
        """Answer a refused message with an error; close a socket that keeps sending bad ones."""
        self._count(kind, code.value)
        conn.error(code, message, ref)
        if not conn.error_budget.take():
            conn.error(ErrorCode.TOO_MANY_ERRORS, "Too many refused messages; closing")
            conn.close(CloseCode.TOO_MANY_ERRORS, ErrorCode.TOO_MANY_ERRORS.value)

    # --- join ------------------------------------------------------------------------------

    async def _join(self, conn: Connection, hello: Hello) -> Room:
        grant = await self._consultations.verify_join_token(hello.join_token)
        facts = await self._consultations.lookup(grant.consultation_id)
        if facts.state in CLOSED_STATES:
            raise Refusal(
                ErrorCode.CONSULTATION_CLOSED,
                f'Cannot join in state "{facts.state}"',
                close=CloseCode.CONSULTATION_CLOSED,
            )
        posture = await self._check_join_posture(conn, grant, hello)
        if grant.role == "host":
            facts = await self._consultations.host_present(grant.consultation_id)
        room = await self._acquire_room(grant.consultation_id)
        try:
            return await self._enter(conn, room, grant, facts.patient_id, facts.state, posture, hello)
        except BaseException:
            await self._release_room(room)
            raise

    async def _check_join_posture(
        self, conn: Connection, grant: JoinGrant, hello: Hello
    ) -> PostureGrant | None:
        needs_posture = grant.role == "room" or grant.device_id is not None
        if not needs_posture:
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
        posture = await self._posture.verify(
            token=hello.posture_token, proof=hello.posture_proof, url=_socket_url(conn), nonce=grant.jti
        )
        if posture.device_id != grant.device_id:
            raise Refusal(
                ErrorCode.FORBIDDEN,
                "The posture token is for another device than the join token",
                close=CloseCode.FORBIDDEN,
            )
        return posture

    async def _enter(
        self,
        conn: Connection,
        room: Room,
        grant: JoinGrant,
        patient_id: str,
        state: str,
        posture: PostureGrant | None,
        hello: Hello,
    ) -> Room:
        room.patient_id = patient_id
        if CONSULTATION_FIELD not in room.raw:
            room.state = state  # type: ignore[assignment]
        if room.state in CLOSED_STATES:
            raise Refusal(
                ErrorCode.CONSULTATION_CLOSED,
                f'Cannot join in state "{room.state}"',
                close=CloseCode.CONSULTATION_CLOSED,
            )
        resume_token = secrets.token_urlsafe(32)
        grace = self.limits.resume_grace.total_seconds()
        offered = hash_resume_token(hello.resume_token) if hello.resume_token else None
        resumed = False

        def mutate(current: ParticipantRecord | None) -> ParticipantRecord:
            nonlocal resumed
            if current is not None and current.status == "denied":
                raise Refusal(ErrorCode.FORBIDDEN, "The host has refused you", close=CloseCode.FORBIDDEN)
            resumed = bool(
                offered is not None
                and current is not None
                and hmac.compare_digest(offered, current.resume_hash)
                and (current.connected or time.time() - current.since <= grace)
            )
            status: RecordStatus
            if grant.role == "host":
                status = "admitted"
            elif resumed and current is not None:
                # A suspended device that resumes has just shown a fresh posture: back to waiting.
                status = "waiting" if current.status == "suspended" else current.status
            else:
                status = "waiting"
            return ParticipantRecord(
                id=grant.participant_id,
                role=grant.role,
                name=grant.name,
                status=status,
                device_id=grant.device_id,
                node=self.node_id,
                conn=conn.id,
                connected=True,
                resume_hash=hash_resume_token(resume_token),
                since=time.time(),
                join_jti=grant.jti,
            )

        change = await self._update(room, grant.participant_id, mutate)
        assert change is not None and change.new is not None  # noqa: S101 - mutate always writes
        conn.grant = grant
        conn.posture = posture
        previous = room.local.get(grant.participant_id)
        if previous is not None and previous is not conn:
            self._replace(previous)
        room.local[grant.participant_id] = conn
        room.refs += 1
        timer = room.grace_timers.pop(grant.participant_id, None)
        if timer is not None:
            timer.cancel()
            room.refs -= 1
        record = change.new
        servers, policy = self._ice.for_participant(grant.participant_id, grant.role)
        conn.send(
            Welcome(
                participant_id=grant.participant_id,
                role=grant.role,
                name=grant.name,
                consultation_id=room.id,
                consultation_state=room.state,
                status=record.status if record.status != "denied" else "waiting",
                resumed=resumed,
                resume_token=resume_token,
                resume_grace_s=int(grace),
                ice_servers=servers,
                ice_policy=policy,
                participants=room.roster_for(record),
                limits=LimitsView(
                    max_message_bytes=self.limits.max_message_bytes,
                    rate_per_s=self.limits.rate_per_s,
                    burst=self.limits.burst,
                ),
                posture_expires_at=int(posture.expires_at) if posture else None,
            ).wire()
        )
        event = "resumed" if resumed else "joined"
        await self._announce(room, event, change, reason=None, skip=conn)
        self._schedule_posture_check(conn, room)
        self._record(
            "signalling.joined",
            room,
            actor=record,
            conn=conn,
            detail={"resumed": resumed, "status": record.status},
        )
        log.info(
            "participant joined",
            extra={
                "consultation_id": room.id,
                "participant": record.id,
                "resumed": resumed,
                "jti": grant.jti,
            },
        )
        return room

    def _replace(self, conn: Connection) -> None:
        """Another socket took this participant over."""
        conn.detached = True
        self._cancel_posture_check(conn)
        conn.send(Replaced().wire())
        conn.close(CloseCode.REPLACED, "replaced")

    # --- messages --------------------------------------------------------------------------

    async def _relay(self, conn: Connection, room: Room, message: Any) -> None:
        records = room.records
        me = records.get(conn.participant_id)
        if me is None or me.conn != conn.id:
            self._count(message.type, "stale")
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
        frame = relay_frame(message, me.id)
        local = room.local.get(target.id)
        if local is not None and local.id == target.conn:
            local.send(frame)
            self._count(message.type, "relayed")
        elif target.connected and target.node != self.node_id:
            await self._bus.publish(
                room.channel, _dumps({"k": "r", "to": target.id, "c": target.conn, "d": frame})
            )
            self._count(message.type, "forwarded")
        else:
            # Reconnecting: the call layer renegotiates after the resume.
            self._count(message.type, "dropped")

    async def _ping(self, conn: Connection, room: Room, message: Any) -> None:
        conn.send(Pong(ref=message.id).wire())
        self._count("ping", "ok")

    async def _second_hello(self, conn: Connection, room: Room, message: Any) -> None:
        raise Refusal(ErrorCode.ALREADY_JOINED, "This socket has already joined")

    async def _leave(self, conn: Connection, room: Room, message: Any) -> None:
        conn_id = conn.id

        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.conn != conn_id:
                return _UNCHANGED
            return None

        conn.detached = True
        self._cancel_posture_check(conn)
        change = await self._update(room, conn.participant_id, mutate)
        self._count("leave", "ok")
        if message.id:
            self._ack(conn, message.id)
        conn.close(CloseCode.NORMAL, "left")
        if change is not None and change.old is not None:
            await self._announce(room, "left", change, reason="left")
            self._record("signalling.left", room, actor=change.old, conn=conn, detail={"reason": "left"})
            if change.old.role == "host":
                await self._host_gone(room)

    def _host_of(self, conn: Connection, room: Room, action: str) -> ParticipantRecord:
        me = room.records.get(conn.participant_id)
        if me is None or me.role != "host":
            raise Refusal(ErrorCode.NOT_HOST, f"Only the host may {action}")
        if me.status == "suspended":
            raise Refusal(ErrorCode.SUSPENDED, f'Cannot {action} in status "suspended"')
        return me

    async def _set_status(
        self,
        room: Room,
        participant_id: str,
        *,
        allowed: frozenset[str],
        to: RecordStatus,
        action: str,
    ) -> Change:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.status == "denied":
                raise Refusal(
                    ErrorCode.UNKNOWN_PARTICIPANT, f'No participant "{participant_id}" in this consultation'
                )
            if current.role == "host":
                raise Refusal(ErrorCode.INVALID_STATE, f"Cannot {action} the host")
            if current.status not in allowed:
                raise Refusal(ErrorCode.INVALID_STATE, f'Cannot {action} in status "{current.status}"')
            return current.evolve(status=to, since=time.time())

        change = await self._update(room, participant_id, mutate)
        assert change is not None  # noqa: S101 - mutate writes or raises
        return change

    async def _admit(self, conn: Connection, room: Room, message: Admit) -> None:
        host = self._host_of(conn, room, "admit")
        change = await self._set_status(
            room, message.participant, allowed=frozenset({"waiting"}), to="admitted", action="admit"
        )
        await self._announce(room, "admitted", change, reason=None)
        self._record(
            "signalling.admitted", room, actor=host, conn=conn, detail={"participant": message.participant}
        )
        self._done(conn, "admit", message.id)

    async def _deny(self, conn: Connection, room: Room, message: Deny) -> None:
        host = self._host_of(conn, room, "deny")
        change = await self._set_status(
            room, message.participant, allowed=frozenset({"waiting", "suspended"}), to="denied", action="deny"
        )
        await self._announce(room, "denied", change, reason=message.reason)
        self._record(
            "signalling.denied", room, actor=host, conn=conn, detail={"participant": message.participant}
        )
        self._done(conn, "deny", message.id)

    async def _return_to_waiting(self, conn: Connection, room: Room, message: ReturnToWaiting) -> None:
        host = self._host_of(conn, room, "return to waiting")
        change = await self._set_status(
            room,
            message.participant,
            allowed=frozenset({"admitted"}),
            to="waiting",
            action="return to waiting",
        )
        await self._announce(room, "returned", change, reason=message.reason or "returned_by_host")
        self._record(
            "signalling.returned", room, actor=host, conn=conn, detail={"participant": message.participant}
        )
        self._done(conn, "return_to_waiting", message.id)

    async def _start(self, conn: Connection, room: Room, message: Any) -> None:
        host = self._host_of(conn, room, "start")
        user_id = conn.grant.user_id if conn.grant else None
        assert user_id is not None  # noqa: S101 - hosts have a user id
        facts = await self._consultations.start(room.id, user_id)
        await self._set_consultation_state(room, facts.state, reason=None)
        self._record("signalling.started", room, actor=host, conn=conn)
        self._done(conn, "start", message.id)

    async def _end(self, conn: Connection, room: Room, message: End) -> None:
        host = self._host_of(conn, room, "end")
        reason = message.reason or "ended by host"
        await self._consultations.end(room.id, conn.grant.user_id if conn.grant else None, reason)
        self._done(conn, "end", message.id)
        self._record("signalling.ended", room, actor=host, conn=conn, detail={"reason": reason})
        await self._set_consultation_state(room, "ended", reason=reason)
        await self._clear_room(room)

    def _done(self, conn: Connection, kind: str, ref: str | None) -> None:
        self._count(kind, "ok")
        if ref:
            self._ack(conn, ref)

    def _ack(self, conn: Connection, ref: str) -> None:
        conn.send(Ack(ref=ref).wire())

    # --- posture during the call -------------------------------------------------------------

    async def _posture_message(self, conn: Connection, room: Room, message: Posture) -> None:
        grant = conn.grant
        assert grant is not None  # noqa: S101 - joined
        if grant.device_id is None:
            raise Refusal(ErrorCode.FORBIDDEN, "Only devices attest their posture")
        try:
            posture = await self._posture.verify(
                token=message.posture_token,
                proof=message.posture_proof,
                url=_socket_url(conn),
                nonce=grant.jti,
            )
            if posture.device_id != grant.device_id:
                raise Refusal(ErrorCode.POSTURE_REFUSED, "The posture token is for another device")
        except Refusal as refusal:
            self._reject(conn, "posture", ErrorCode.POSTURE_REFUSED, refusal.message, message.id)
            await self._suspend(room, grant.participant_id, "posture_refused")
            return
        conn.posture = posture
        self._schedule_posture_check(conn, room)
        conn.send(PostureAccepted(ref=message.id, expires_at=int(posture.expires_at)).wire())
        self._count("posture", "ok")
        me = room.records.get(grant.participant_id)
        if me is not None and me.status == "suspended":
            await self._reinstate(room, grant.participant_id, conn)

    def _schedule_posture_check(self, conn: Connection, room: Room) -> None:
        self._cancel_posture_check(conn)
        posture = conn.posture
        if posture is None:
            return
        delay = max(0.0, posture.expires_at - self.limits.posture_leeway.total_seconds() - time.time())
        loop = asyncio.get_running_loop()
        # A lambda, not a coroutine object: a cancelled timer must not leave one un-awaited.
        conn.posture_timer = loop.call_later(
            delay, lambda: self._spawn_soon(self._posture_lapsed(conn, room, posture))
        )

    def _cancel_posture_check(self, conn: Connection) -> None:
        if conn.posture_timer is not None:
            conn.posture_timer.cancel()
            conn.posture_timer = None

    async def _posture_lapsed(self, conn: Connection, room: Room, posture: PostureGrant) -> None:
        if conn.posture is not posture or conn.detached or conn.closing:
            return
        await self._suspend(room, conn.participant_id, "posture_expired")

    async def _suspend(self, room: Room, participant_id: str, reason: str) -> None:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.status not in ("waiting", "admitted"):
                return _UNCHANGED
            return current.evolve(status="suspended", since=time.time())

        change = await self._update(room, participant_id, mutate)
        if change is None or change.new is None:
            return
        await self._announce(room, "suspended", change, reason=reason)
        self._record(
            "signalling.suspended",
            room,
            actor=None,
            subject=change.new,
            outcome="denied",
            detail={"participant": participant_id, "reason": reason},
        )
        log.info(
            "participant suspended",
            extra={"consultation_id": room.id, "participant": participant_id, "reason": reason},
        )

    async def _reinstate(self, room: Room, participant_id: str, conn: Connection) -> None:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.status != "suspended":
                return _UNCHANGED
            status: RecordStatus = "admitted" if current.role == "host" else "waiting"
            return current.evolve(status=status, since=time.time())

        change = await self._update(room, participant_id, mutate)
        if change is None or change.new is None:
            return
        event = "admitted" if change.new.status == "admitted" else "returned"
        await self._announce(room, event, change, reason="posture_restored")
        self._record(
            "signalling.reinstated", room, actor=change.new, conn=conn, detail={"status": change.new.status}
        )

    async def _suspend_device_here(self, device_id: str, reason: str) -> None:
        for room in list(self._rooms.values()):
            for conn in list(room.local.values()):
                grant = conn.grant
                if grant is not None and grant.device_id == device_id and not conn.detached:
                    await self._suspend(room, grant.participant_id, reason)

    # --- leaving ---------------------------------------------------------------------------

    async def _socket_gone(self, conn: Connection) -> None:
        grant = conn.grant
        if grant is None:
            return
        self._cancel_posture_check(conn)
        room = self._rooms.get(grant.consultation_id)
        if room is None:
            return
        if room.local.get(grant.participant_id) is conn:
            del room.local[grant.participant_id]
        try:
            if not conn.detached:
                await self._mark_disconnected(room, grant.participant_id, conn.id)
        finally:
            await self._release_room(room)

    async def _mark_disconnected(self, room: Room, participant_id: str, conn_id: str) -> None:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.conn != conn_id or not current.connected:
                return _UNCHANGED
            if current.status == "denied":
                return _UNCHANGED
            return current.evolve(connected=False, since=time.time())

        change = await self._update(room, participant_id, mutate)
        if change is None:
            return
        await self._announce(room, "disconnected", change, reason=None)
        self._start_grace(room, participant_id, conn_id)

    def _start_grace(self, room: Room, participant_id: str, conn_id: str, delay: float | None = None) -> None:
        if participant_id in room.grace_timers:
            return
        if delay is None:
            delay = self.limits.resume_grace.total_seconds()
        room.refs += 1
        loop = asyncio.get_running_loop()
        room.grace_timers[participant_id] = loop.call_later(
            delay, lambda: self._spawn_soon(self._grace_over(room, participant_id, conn_id))
        )

    async def _grace_over(self, room: Room, participant_id: str, conn_id: str) -> None:
        room.grace_timers.pop(participant_id, None)
        try:
            await self._expire(room, participant_id, conn_id)
        finally:
            await self._release_room(room)

    async def _expire(self, room: Room, participant_id: str, conn_id: str) -> None:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.conn != conn_id or current.connected or current.status == "denied":
                return _UNCHANGED
            return None

        change = await self._update(room, participant_id, mutate)
        if change is None or change.old is None:
            return
        await self._announce(room, "left", change, reason="timeout")
        self._record("signalling.left", room, actor=change.old, detail={"reason": "timeout"})
        if change.old.role == "host":
            await self._host_gone(room)

    async def _host_gone(self, room: Room) -> None:
        """Without its host a call does not go on: the admitted go back to waiting."""
        for record in list(room.records.values()):
            if record.role != "host" and record.status == "admitted":
                with contextlib.suppress(Refusal):
                    change = await self._set_status(
                        room,
                        record.id,
                        allowed=frozenset({"admitted"}),
                        to="waiting",
                        action="return to waiting",
                    )
                    await self._announce(room, "returned", change, reason="host_left")

    # --- consultation state ------------------------------------------------------------------

    async def _set_consultation_state(self, room: Room, state: str, *, reason: str | None) -> None:
        body = json.dumps({"state": state})
        expected = room.raw.get(CONSULTATION_FIELD)
        for _ in range(8):
            result = await self._presence.cas(room.id, CONSULTATION_FIELD, expected, body)
            if result.ok:
                raw = f"{result.rev}|{body}"
                room.apply(CONSULTATION_FIELD, raw, result.rev)
                self._consultation_event(room, state, reason)
                await self._bus.publish(
                    room.channel,
                    _dumps({"k": "cs", "n": self.node_id, "r": result.rev, "s": raw, "why": reason}),
                )
                return
            expected = result.current
        raise Refusal(ErrorCode.SERVICE_UNAVAILABLE, "Presence is busy; try again")

    def _consultation_event(self, room: Room, state: str, reason: str | None) -> None:
        if state == "live":
            frame = ConsultationEvent(type="consultation.live").wire()
            for conn in room.local.values():
                conn.send(frame)
        elif state in CLOSED_STATES:
            frame = ConsultationEvent(type="consultation.ended", reason=reason).wire()
            for conn in list(room.local.values()):
                conn.detached = True
                self._cancel_posture_check(conn)
                conn.send(frame)
                conn.close(CloseCode.CONSULTATION_CLOSED, "consultation_ended")

    async def _clear_room(self, room: Room) -> None:
        """After the end: drop the participant records (quietly: everyone has been told)."""
        for name, raw in list(room.raw.items()):
            if name.startswith(PARTICIPANT_PREFIX):
                with contextlib.suppress(Exception):
                    await self._presence.cas(room.id, name, raw, None)
                room.forget(name)

    async def _ended_elsewhere(self, consultation_id: str, reason: str) -> None:
        room = self._rooms.get(consultation_id)
        if room is None or room.state in CLOSED_STATES:
            return
        room.state = "ended"
        self._consultation_event(room, "ended", reason)

    # --- presence and events -----------------------------------------------------------------

    async def _update(self, room: Room, participant_id: str, mutate: Mutation) -> Change | None:
        """Compare-and-set one participant's record; None when ``mutate`` changes nothing."""
        name = PARTICIPANT_PREFIX + participant_id
        expected = room.raw.get(name)
        for _ in range(16):
            current = ParticipantRecord.from_json(Stored.parse(expected).body) if expected else None
            new = mutate(current)
            if new is _UNCHANGED:
                return None
            body = new.to_json() if new is not None else None
            result = await self._presence.cas(room.id, name, expected, body)
            if result.ok:
                room.apply(name, f"{result.rev}|{body}" if body is not None else None, result.rev)
                return Change(old=current, new=new, rev=result.rev)
            expected = result.current
            if expected is None:
                room.forget(name)
            else:
                room.apply(name, expected, Stored.parse(expected).rev)
        raise Refusal(ErrorCode.SERVICE_UNAVAILABLE, "Presence is busy; try again")

    async def _announce(
        self,
        room: Room,
        event: str,
        change: Change,
        *,
        reason: str | None,
        skip: Connection | None = None,
    ) -> None:
        """Tell this node's sockets, then the other nodes."""
        self._dispatch(room, event, change.old, change.new, reason, skip=skip)
        subject = change.new or change.old
        assert subject is not None  # noqa: S101 - a change has a before or an after
        name = PARTICIPANT_PREFIX + subject.id
        await self._bus.publish(
            room.channel,
            _dumps(
                {
                    "k": "p",
                    "n": self.node_id,
                    "f": name,
                    "r": change.rev,
                    "s": room.raw.get(name) if change.new is not None else None,
                    "e": event,
                    "why": reason,
                    "old": change.old.to_json() if change.old is not None else None,
                }
            ),
        )

    def _dispatch(
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
                self._replace(mine)
            else:
                self._tell_subject(room, mine, event, new, reason)
        kind = _EVENT_TYPES.get(event)
        if kind is None:
            return
        frame = ParticipantEvent(type=kind, participant=subject.view(), reason=reason).wire()
        for pid, conn in room.local.items():
            if pid == subject.id or conn is skip:
                continue
            viewer = room.records.get(pid)
            if viewer is None or conn.detached:
                continue
            if subject.role == "host" or room.sees_everyone(viewer):
                conn.send(frame)

    def _tell_subject(
        self, room: Room, conn: Connection, event: str, record: ParticipantRecord | None, reason: str | None
    ) -> None:
        if record is None:
            return
        if event == "admitted":
            conn.send(Admitted(participants=room.roster_for(record)).wire())
        elif event == "denied":
            conn.detached = True
            self._cancel_posture_check(conn)
            conn.send(Denied(reason=reason).wire())
            conn.close(CloseCode.FORBIDDEN, "denied")
        elif event == "returned":
            conn.send(Returned(reason=reason).wire())
        elif event == "suspended":
            conn.send(Suspended(reason=reason or "suspended").wire())

    def _on_room_message(self, room: Room, data: bytes) -> None:
        envelope = json.loads(data)
        kind = envelope.get("k")
        if kind == "r":
            conn = room.local.get(envelope["to"])
            record = room.records.get(envelope["to"])
            if conn is not None and record is not None and record.conn == conn.id == envelope["c"]:
                if record.status == "admitted":
                    conn.send(envelope["d"])
            return
        if envelope.get("n") == self.node_id:
            return
        if kind == "p":
            name = envelope["f"]
            pid = name[len(PARTICIPANT_PREFIX) :]
            old = room.records.get(pid)
            if old is None and envelope.get("old"):
                old = ParticipantRecord.from_json(envelope["old"])
            if room.apply(name, envelope["s"], envelope["r"]):
                new = room.records.get(pid)
                self._dispatch(room, envelope["e"], old, new, envelope.get("why"))
                self._after_remote_change(room, envelope["e"], old, new)
        elif kind == "cs":
            if room.apply(CONSULTATION_FIELD, envelope["s"], envelope["r"]):
                self._consultation_event(room, room.state, envelope.get("why"))

    def _after_remote_change(
        self, room: Room, event: str, old: ParticipantRecord | None, new: ParticipantRecord | None
    ) -> None:
        # Any node holding the room times a disconnected participant out, so the grace period
        # ends even if the node that held the socket is gone (the compare-and-set picks one).
        if event == "disconnected" and new is not None:
            self._start_grace(room, new.id, new.conn)
        elif new is not None and new.connected:
            timer = room.grace_timers.pop(new.id, None)
            if timer is not None:
                timer.cancel()
                self._spawn_soon(self._release_room(room))

    def _on_control(self, data: bytes) -> None:
        envelope = json.loads(data)
        if envelope.get("n") == self.node_id:
            return
        if envelope.get("k") == "suspend":
            self._spawn_soon(self._suspend_device_here(envelope["device"], envelope["why"]))
        elif envelope.get("k") == "ended":
            self._spawn_soon(self._ended_elsewhere(envelope["cid"], envelope["why"]))

    # --- rooms -----------------------------------------------------------------------------

    async def _acquire_room(self, consultation_id: str) -> Room:
        room = self._rooms.get(consultation_id)
        if room is not None:
            room.refs += 1
            try:
                await asyncio.shield(room.loaded)
            except Exception as exc:
                raise Refusal(
                    ErrorCode.SERVICE_UNAVAILABLE,
                    "Signalling presence is not reachable; try again",
                    close=CloseCode.TRY_AGAIN_LATER,
                ) from exc
            return room
        room = Room(consultation_id, channel=f"{self._prefix}:sig:c:{consultation_id}")
        room.refs = 1
        self._rooms[consultation_id] = room

        def handler(data: bytes) -> None:
            self._on_room_message(room, data)

        room.handler = handler
        try:
            await self._bus.subscribe(room.channel, handler)
            room.load(await self._presence.snapshot(consultation_id))
        except Exception as exc:
            self._rooms.pop(consultation_id, None)
            room.loaded.set_exception(exc)
            room.loaded.exception()  # retrieved: waiters re-raise it themselves
            with contextlib.suppress(Exception):
                await self._bus.unsubscribe(room.channel, handler)
            raise Refusal(
                ErrorCode.SERVICE_UNAVAILABLE,
                "Signalling presence is not reachable; try again",
                close=CloseCode.TRY_AGAIN_LATER,
            ) from exc
        room.loaded.set_result(None)
        return room

    async def _release_room(self, room: Room) -> None:
        room.refs -= 1
        if room.refs > 0 or self._rooms.get(room.id) is not room:
            return
        del self._rooms[room.id]
        if room.handler is not None:
            with contextlib.suppress(Exception):
                await self._bus.unsubscribe(room.channel, room.handler)

    # --- sweeper -----------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("signalling presence sweep failed")

    async def sweep(self) -> None:
        """Heartbeat; keep rooms alive; time out participants of nodes that died."""
        await self._presence.node_heartbeat(self.node_id)
        rooms = list(self._rooms.values())
        await self._presence.touch(room.id for room in rooms)
        others = {
            r.node for room in rooms for r in room.records.values() if r.connected and r.node != self.node_id
        }
        alive = await self._presence.nodes_alive(others) if others else set()
        grace = self.limits.resume_grace.total_seconds()
        now = time.time()
        for room in rooms:
            for record in list(room.records.values()):
                if record.status == "denied":
                    continue
                if record.connected and record.node != self.node_id and record.node not in alive:
                    await self._mark_disconnected(room, record.id, record.conn)
                elif not record.connected and record.id not in room.grace_timers:
                    self._start_grace(
                        room, record.id, record.conn, delay=max(0.0, record.since + grace - now)
                    )

    # --- helpers ---------------------------------------------------------------------------

    def _spawn_soon(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("signalling task failed", exc_info=task.exception())

    def _count(self, kind: str, outcome: str) -> None:
        if self._metrics is None:
            return
        key = (kind, outcome)
        child = self._counters.get(key)
        if child is None:
            counter: Counter = self._metrics.ws_messages
            child = self._counters[key] = counter.labels(kind, outcome)
        child.inc()

    def _record(
        self,
        action: str,
        room: Room,
        *,
        actor: ParticipantRecord | None,
        conn: Connection | None = None,
        subject: ParticipantRecord | None = None,
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None:
        about = actor or subject
        self._audit.record(
            AuditRecord(
                action=action,
                outcome="denied" if outcome == "denied" else "success",
                actor_id=actor.id if actor else None,
                actor_role=actor.role if actor else "system",
                consultation_id=room.id,
                patient_id=room.patient_id,
                device_id=about.device_id if about else None,
                authority_jti=(
                    conn.grant.jti if conn and conn.grant else (about.join_jti if about else None)
                ),
                ip=conn.ip if conn else None,
                detail=detail,
            )
        )


def _socket_url(conn: Connection) -> str:
    """The URL a device signs its proofs for: the socket's, without a query."""
    return str(conn.websocket.url.replace(query=""))


def _dumps(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode()
