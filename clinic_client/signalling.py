"""The signalling client: one WebSocket to the telemed server for one participant of one consultation.

It says ``hello`` (join token; a device adds its posture token and a proof signed with its
key), waits in the waiting room, carries offers/answers/ICE for
:class:`clinic_client.call.Call` (it is the call's :class:`~clinic_client.call.SignallingChannel`),
keeps a device's posture fresh, and — when the socket drops — comes back with the resume
token within the server's grace period, keeping its place.

Example::

    import asyncio
    from clinic_client.signalling import SignallingClient

    async def main() -> None:
        client = SignallingClient("wss://telemed.example.org/ws/v1/signalling", join_token)
        welcome = await client.connect()
        print(welcome.participant_id, welcome.status)          # "specialist:4f2a…" "waiting"
        async for event in client:                             # until the socket closes for good
            if event.type == "admitted":
                print("in the call with", [p.name for p in event.participants])
            elif event.type == "offer":
                ...                                            # hand to the call
        await client.close()

    asyncio.run(main())

A host drives the waiting room with :meth:`SignallingClient.admit`,
:meth:`~SignallingClient.deny`, :meth:`~SignallingClient.return_to_waiting`,
:meth:`~SignallingClient.start` and :meth:`~SignallingClient.end`. docs/protocol.md
describes every message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from clinic_client.call import IceConfig, IceServer, SignalKind

log = logging.getLogger("telemed.client.signalling")

PROTOCOL_VERSION = 1
# Close codes after which coming back cannot help (docs/protocol.md).
FINAL_CLOSE_CODES = frozenset({1000, 4400, 4401, 4403, 4404, 4409, 4410, 4429})
# What a UI may send through :meth:`SignallingClient.send_message` (docs/protocol.md).
FORWARDABLE_TYPES = frozenset(
    {"offer", "answer", "ice", "admit", "deny", "return_to_waiting", "start", "end", "leave", "ping"}
)
ClientState = Literal["new", "connecting", "open", "reconnecting", "closed"]
TRY_AGAIN_LATER = 1013  # a service the server needs is down: resume again, with back-off


# --- errors --------------------------------------------------------------------------------


class SignallingError(Exception):
    """Base of the client's errors; ``code`` is the server's error code (or the client's own)."""

    def __init__(
        self, message: str, *, code: str = "signalling_error", close_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


class JoinRefused(SignallingError):
    """The server refused the ``hello`` (bad join token, posture, denied, ended…)."""


class RequestRefused(SignallingError):
    """The server answered a request (admit, start, posture…) with an error."""


class NotConnected(SignallingError):
    """There is no open socket right now (reconnecting, or closed)."""


# --- what the server says ------------------------------------------------------------------


@dataclass(frozen=True)
class Participant:
    """Another participant, as the server describes them."""

    id: str
    role: str
    name: str
    status: str
    connected: bool

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Participant:
        """Read a ``participant`` object."""
        return cls(
            id=str(data["id"]),
            role=str(data.get("role", "")),
            name=str(data.get("name", "")),
            status=str(data.get("status", "waiting")),
            connected=bool(data.get("connected", True)),
        )


def ice_config(data: Mapping[str, Any]) -> IceConfig:
    """The :class:`IceConfig` of a ``welcome`` or ``ice_servers`` message."""
    servers = tuple(
        IceServer(
            urls=tuple(s["urls"]) if isinstance(s["urls"], list) else (str(s["urls"]),),
            username=s.get("username"),
            credential=s.get("credential"),
        )
        for s in data.get("ice_servers", [])
    )
    return IceConfig(servers=servers, policy="relay" if data.get("ice_policy") == "relay" else "all")


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


@dataclass(frozen=True)
class Welcome:
    """The server's answer to ``hello``: who we are, where we wait, how to reach TURN."""

    participant_id: str
    role: str
    name: str
    consultation_id: str
    consultation_state: str
    status: str
    resumed: bool
    resume_grace_s: int
    ice: IceConfig
    participants: tuple[Participant, ...]
    posture_expires_at: datetime | None
    ice_expires_at: datetime | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Welcome:
        """Read a ``welcome`` message."""
        return cls(
            participant_id=str(data["participant_id"]),
            role=str(data["role"]),
            name=str(data["name"]),
            consultation_id=str(data["consultation_id"]),
            consultation_state=str(data["consultation_state"]),
            status=str(data["status"]),
            resumed=bool(data.get("resumed", False)),
            resume_grace_s=int(data.get("resume_grace_s", 0)),
            ice=ice_config(data),
            participants=tuple(Participant.from_wire(p) for p in data.get("participants", [])),
            posture_expires_at=_timestamp(data.get("posture_expires_at")),
            ice_expires_at=_timestamp(data.get("ice_expires_at")),
        )


@dataclass(frozen=True)
class ServerEvent:
    """One message from the server (or ``reconnected`` / ``closed`` from the client itself).

    ``type`` is the protocol's message type (``admitted``, ``participant.joined``, ``offer``,
    ``consultation.ended``…). ``participant`` is filled for ``participant.*`` events,
    ``participants`` for ``admitted``, ``sender`` for offer/answer/ice, ``welcome`` for
    ``reconnected``, ``ice`` and ``expires_at`` for ``ice_servers`` (fresh TURN
    credentials); ``data`` is the whole message.
    """

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    participant: Participant | None = None
    participants: tuple[Participant, ...] = ()
    sender: str | None = None
    reason: str | None = None
    welcome: Welcome | None = None
    close_code: int | None = None
    ice: IceConfig | None = None
    expires_at: datetime | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ServerEvent:
        """Read any server message (raises ValueError/KeyError/TypeError on a malformed one)."""
        kind = str(data.get("type", ""))
        participant = data.get("participant")
        ice = ice_config(data) if kind == "ice_servers" else None
        return cls(
            type=kind,
            data=data,
            participant=Participant.from_wire(participant) if isinstance(participant, Mapping) else None,
            participants=tuple(Participant.from_wire(p) for p in data.get("participants", []) or []),
            sender=str(data["from"]) if "from" in data else None,
            reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
            ice=ice,
            expires_at=_timestamp(data.get("expires_at")) if kind == "ice_servers" else None,
        )


class PostureSource(Protocol):
    """What the client needs from the device's posture agent (:class:`clinic_client.posture.PostureAgent`)."""

    @property
    def current(self) -> Any:
        """The latest posture result (``token``, ``jti``, ``expires_at``), or None."""
        ...

    async def attest(self) -> Any:
        """Attest now; the new posture result."""
        ...

    def proof(self, method: str, url: str, *, nonce: str | None = None, token: Any = None) -> str:
        """A request proof for ``method url`` bound to a posture token."""
        ...


def token_claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT we hold ourselves — for its ``jti``, never for trust."""
    try:
        payload = token.split(".")[1]
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise SignallingError("The join token is not a JWT", code="bad_join_token") from exc
    return claims


# --- the client -----------------------------------------------------------------------------


class SignallingClient:
    """One participant's signalling socket (see the module docstring for an example).

    ``posture`` is required for a room endpoint or a host on a prison laptop: the client
    attests (or reuses a fresh token), signs a proof for the socket URL bound to the join
    token, and renews the posture ``posture_margin`` before it expires. With ``reconnect``
    a dropped socket comes back with the resume token within the server's grace period;
    the iterator then yields a ``reconnected`` event carrying the new :class:`Welcome`.

    :attr:`ice` is always the latest ICE configuration: the welcome's, then each
    ``ice_servers`` event's (the server renews TURN credentials before they expire).
    Give it to :meth:`clinic_client.call.Call.update_ice` so that every new peer
    connection — a recovery, someone admitted later — can still allocate a relay.
    """

    def __init__(
        self,
        url: str,
        join_token: str,
        *,
        posture: PostureSource | None = None,
        reconnect: bool = True,
        open_timeout: float = 10.0,
        keepalive_s: float = 15.0,
        posture_margin: timedelta = timedelta(seconds=60),
    ) -> None:
        self.url = url
        self._join_token = join_token
        self._join_jti = str(token_claims(join_token).get("jti", ""))
        self._posture = posture
        self._reconnect = reconnect
        self._open_timeout = open_timeout
        self._keepalive_s = keepalive_s
        self._posture_margin = posture_margin
        self._ws: ClientConnection | None = None
        self._events: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._resume_token: str | None = None
        self._last_proof: str | None = None
        self.state: ClientState = "new"
        self.welcome: Welcome | None = None
        self.welcome_data: dict[str, Any] = {}
        self.close_code: int | None = None
        self.last_error: ServerEvent | None = None
        self.reconnects = 0
        self.ice: IceConfig | None = None
        self.ice_expires_at: datetime | None = None

    # --- connecting ----------------------------------------------------------------------

    async def connect(self) -> Welcome:
        """Open the socket and join; the :class:`Welcome` (raises :class:`JoinRefused`).

        Example::

            welcome = await client.connect()
            welcome.status            # "waiting" (or "admitted" for the host)
        """
        if self.state != "new":
            raise SignallingError(f'Cannot connect in state "{self.state}"', code="invalid_state")
        self.state = "connecting"
        try:
            welcome = await self._open(resume=False)
        except BaseException:
            self.state = "closed"
            raise
        self.state = "open"
        self._reader = asyncio.create_task(self._read_forever(), name="signalling-reader")
        return welcome

    async def _open(self, *, resume: bool) -> Welcome:
        hello: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "hello", "join_token": self._join_token}
        if resume and self._resume_token:
            hello["resume_token"] = self._resume_token
        if self._posture is not None:
            hello.update(await self._posture_fields())
        try:
            ws = await connect(
                self.url,
                open_timeout=self._open_timeout,
                ping_interval=self._keepalive_s,
                ping_timeout=self._keepalive_s,
                max_size=2**20,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise NotConnected(f"Cannot reach {self.url}: {type(exc).__name__}", code="unreachable") from exc
        try:
            await ws.send(json.dumps(hello))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), self._open_timeout))
                if message.get("type") == "welcome":
                    break
                if message.get("type") == "error":
                    self.last_error = ServerEvent.from_wire(message)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            error = self.last_error.data if self.last_error else {}
            raise JoinRefused(
                str(error.get("message", "The server closed the socket")),
                code=str(error.get("code", "closed")),
                close_code=code,
            ) from None
        except (TimeoutError, ValueError) as exc:
            await ws.close()
            raise NotConnected("No welcome from the server", code="no_welcome") from exc
        self._ws = ws
        welcome = Welcome.from_wire(message)
        self.welcome = welcome
        # The raw welcome for a UI to show, without the one secret in it.
        self.welcome_data = {k: v for k, v in message.items() if k != "resume_token"}
        self.ice, self.ice_expires_at = welcome.ice, welcome.ice_expires_at
        self._resume_token = str(message["resume_token"])
        self._schedule_posture_renewal(welcome.posture_expires_at)
        return welcome

    async def _posture_fields(self) -> dict[str, str]:
        assert self._posture is not None  # noqa: S101 - only called with a posture source
        result = self._posture.current
        now = datetime.now(UTC)
        if result is None or result.expires_at - now < self._posture_margin:
            result = await self._posture.attest()
        proof = self._posture.proof("WS", self.url, nonce=self._join_jti, token=result)
        while proof == self._last_proof:
            # Same token, same second: the proof would be byte-identical, and the server
            # refuses a replayed proof. The next second makes it a new one.
            await asyncio.sleep(1.0 - datetime.now(UTC).microsecond / 1e6 + 0.01)
            proof = self._posture.proof("WS", self.url, nonce=self._join_jti, token=result)
        self._last_proof = proof
        return {"posture_token": result.token, "posture_proof": proof}

    # --- sending -----------------------------------------------------------------------

    @property
    def participant_id(self) -> str:
        """Our participant id (after :meth:`connect`)."""
        if self.welcome is None:
            raise NotConnected("Not joined yet", code="not_joined")
        return self.welcome.participant_id

    async def send(self, to_participant_id: str, kind: SignalKind, payload: dict[str, Any]) -> None:
        """Send an offer, answer or ICE candidate to another admitted participant.

        This is :class:`clinic_client.call.SignallingChannel`: ``payload`` is what the call
        produces. While the socket is reconnecting the message is dropped; the call
        negotiates a fresh connection once it is back.

        Example::

            await client.send("room:room-01", "ice", {"candidate": "", "connection_id": cid})
        """
        message: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": kind, "to": to_participant_id}
        if kind == "ice":
            for key in ("candidate", "sdpMid", "sdpMLineIndex", "usernameFragment", "connection_id"):
                if key in payload:
                    message[key] = payload[key]
        else:
            message["sdp"] = payload["sdp"]
            message["connection_id"] = payload["connection_id"]
        ws = self._ws
        if ws is None or self.state != "open":
            log.info("not sending %s to %s: socket %s", kind, to_participant_id, self.state)
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(message))

    async def send_message(self, message: Mapping[str, Any]) -> None:
        """Send one protocol message as given (a UI's own ``offer``, ``admit``, ``ping``…), adding ``v``.

        Only the types in :data:`FORWARDABLE_TYPES` may be sent this way (never ``hello`` or
        ``posture``: those carry this client's credentials); the server validates the rest and
        answers with ``error`` events. An ``id`` comes back as the ``ref`` of the server's
        ``ack``/``pong``/``error``, which then reach the event iterator.

        Example::

            await client.send_message({"type": "admit", "id": "page-7", "participant": "room:room-01"})
        """
        kind = message.get("type")
        if kind not in FORWARDABLE_TYPES:
            raise SignallingError(f"Cannot send a message of type {str(kind)[:32]!r}", code="unknown_type")
        ws = self._ws
        if ws is None or self.state != "open":
            raise NotConnected(f'Cannot send {kind} in state "{self.state}"', code="not_connected")
        try:
            await ws.send(json.dumps({**message, "v": PROTOCOL_VERSION}))
        except ConnectionClosed as exc:
            raise NotConnected(f"The socket closed before {kind} was sent", code="not_connected") from exc

    async def request(self, kind: str, *, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """Send a control message and wait for its ``ack`` (raises :class:`RequestRefused`).

        Example::

            await client.request("admit", participant="room:room-01")
        """
        ws = self._ws
        if ws is None or self.state != "open":
            raise NotConnected(f'Cannot send {kind} in state "{self.state}"', code="not_connected")
        ref = f"c{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await ws.send(json.dumps({"v": PROTOCOL_VERSION, "type": kind, "id": ref, **fields}))
            reply = await asyncio.wait_for(future, timeout)
        except ConnectionClosed as exc:
            raise NotConnected(f"The socket closed before {kind} was answered", code="not_connected") from exc
        finally:
            self._pending.pop(ref, None)
        if reply.get("type") == "error":
            raise RequestRefused(str(reply.get("message", "")), code=str(reply.get("code", "error")))
        return reply

    async def admit(self, participant_id: str) -> None:
        """Host: let a waiting participant into the call."""
        await self.request("admit", participant=participant_id)

    async def deny(self, participant_id: str, reason: str | None = None) -> None:
        """Host: refuse a waiting participant (their socket is closed)."""
        await self.request("deny", participant=participant_id, reason=reason)

    async def return_to_waiting(self, participant_id: str, reason: str | None = None) -> None:
        """Host: send an admitted participant back to the waiting room."""
        await self.request("return_to_waiting", participant=participant_id, reason=reason)

    async def start(self) -> None:
        """Host: make the consultation live (identity confirmed and consent recorded first)."""
        await self.request("start")

    async def end(self, reason: str | None = None) -> None:
        """Host: end the consultation for everyone."""
        await self.request("end", reason=reason)

    async def leave(self) -> None:
        """Leave the consultation now (no grace period), then close."""
        with contextlib.suppress(SignallingError):
            await self.request("leave", timeout=5.0)
        await self.close()

    async def close(self) -> None:
        """Close the socket and stop the client's tasks."""
        if self.state == "closed" and self._reader is None:
            return
        self.state = "closed"
        for task in (self._renewer, self._reader):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._renewer = self._reader = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._fail_pending()

    def drop_socket(self) -> None:
        """Cut the socket abruptly, as a network failure would (tests and diagnostics)."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    # --- receiving ---------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[ServerEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ServerEvent]:
        while True:
            event = await self._events.get()
            yield event
            if event.type == "closed":
                return

    async def next_event(self, timeout: float | None = None) -> ServerEvent:
        """The next event (``closed`` is the last one)."""
        return await asyncio.wait_for(self._events.get(), timeout)

    async def _read_forever(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None  # noqa: S101 - set by _open
            try:
                async for raw in ws:
                    self._on_frame(raw)
                code = ws.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            self.close_code = code
            if not self._reconnect or code in FINAL_CLOSE_CODES or self.state == "closed":
                break
            if not await self._resume():
                break
        self.state = "closed"
        self._fail_pending()
        self._events.put_nowait(ServerEvent(type="closed", close_code=self.close_code))

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("ignoring a frame that is not JSON")
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        ref = message.get("ref")
        if isinstance(ref, str) and ref in self._pending and kind in ("ack", "error", "posture.accepted"):
            future = self._pending.pop(ref)
            if not future.done():
                future.set_result(message)
            if kind != "error":
                return
        if kind == "pong":
            return
        try:
            event = ServerEvent.from_wire(message)
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed %s message", str(kind)[:32])
            return
        if kind == "ice_servers" and event.ice is not None:
            # Fresh TURN credentials: the ones every new peer connection must use from now on.
            self.ice, self.ice_expires_at = event.ice, event.expires_at
        elif kind == "error":
            self.last_error = event
            log.info("server refused a message: %s", message.get("code"))
        self._events.put_nowait(event)

    async def _resume(self) -> bool:
        """Come back with the resume token, with back-off, until the grace period is over."""
        self.state = "reconnecting"
        self._ws = None
        self._fail_pending()
        self._events.put_nowait(ServerEvent(type="reconnecting", close_code=self.close_code))
        grace = self.welcome.resume_grace_s if self.welcome else 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(grace, 1) + self._open_timeout
        delay = 0.1
        while loop.time() < deadline and self.state == "reconnecting":
            try:
                welcome = await self._open(resume=True)
            except JoinRefused as refused:
                self.close_code = refused.close_code
                if refused.close_code == TRY_AGAIN_LATER:
                    # A service the server needs is down for now (Redis, the database).
                    log.info("resume refused for now (%s); retrying", refused.code)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                log.warning("resume refused: %s", refused.code)
                return False
            except (NotConnected, OSError) as exc:
                log.info("resume attempt failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.state = "open"
            self.reconnects += 1
            self._events.put_nowait(
                ServerEvent(type="reconnected", welcome=welcome, data=dict(self.welcome_data))
            )
            return True
        return False

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NotConnected("The socket closed", code="not_connected"))
                future.exception()  # retrieved: the waiter raises its own
        self._pending.clear()

    # --- posture -----------------------------------------------------------------------

    def _schedule_posture_renewal(self, expires_at: datetime | None) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        if self._posture is None or expires_at is None:
            return
        self._renewer = asyncio.create_task(self._renew_posture(expires_at), name="posture-renewal")

    async def _renew_posture(self, expires_at: datetime) -> None:
        assert self._posture is not None  # noqa: S101 - scheduled only with a posture source
        while True:
            lifetime = expires_at - datetime.now(UTC)
            margin = min(self._posture_margin, lifetime / 3)
            await asyncio.sleep(max(0.0, (lifetime - margin).total_seconds()))
            try:
                result = await self._posture.attest()
                proof = self._posture.proof("WS", self.url, nonce=self._join_jti, token=result)
                reply = await self.request("posture", posture_token=result.token, posture_proof=proof)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The server suspends us when the current token lapses; keep trying until then.
                log.warning("posture renewal failed: %s", getattr(exc, "code", type(exc).__name__))
                await asyncio.sleep(5.0)
                continue
            expires_at = datetime.fromtimestamp(int(reply["expires_at"]), UTC)
