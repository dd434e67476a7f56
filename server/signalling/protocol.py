"""The signalling wire protocol, version 1: every message both ways, error codes, close codes.

Every message is one JSON object in one text frame with ``"v": 1`` and a ``"type"``.
Client messages may carry an ``"id"`` (≤ 64 characters); replies about that message
(``ack``, ``pong``, ``error``) carry it back as ``"ref"``.

Inbound messages are parsed in one pass by pydantic-core (:func:`parse_client_message`);
only a message that fails is parsed again, slowly, to say precisely what is wrong
(bad JSON, wrong version, unknown type, which fields). Outbound messages are built from
the models below, so a server message can never carry a field the protocol does not name.
See docs/protocol.md.
"""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1

MAX_TOKEN_CHARS = 8192
MAX_SDP_CHARS = 60 * 1024
MAX_CANDIDATE_CHARS = 1024
MAX_REASON_CHARS = 200

ParticipantId = Annotated[str, Field(min_length=3, max_length=128, pattern=r"^[a-z]+:[A-Za-z0-9._-]{1,120}$")]
MessageId = Annotated[str, Field(min_length=1, max_length=64)]
ConnectionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
ResumeToken = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{32,64}$")]
Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS)]

Role = Literal["host", "room", "specialist"]
Status = Literal["waiting", "admitted", "suspended"]
ConsultationState = Literal["scheduled", "open", "live", "ended", "cancelled", "no_show"]


class ErrorCode(StrEnum):
    """``code`` of an ``error`` message; stable, for clients to branch on."""

    BAD_JSON = "bad_json"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    HELLO_REQUIRED = "hello_required"
    HELLO_TIMEOUT = "hello_timeout"
    ALREADY_JOINED = "already_joined"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    POSTURE_REQUIRED = "posture_required"
    POSTURE_REFUSED = "posture_refused"
    CONSULTATION_NOT_FOUND = "consultation_not_found"
    CONSULTATION_CLOSED = "consultation_closed"
    NOT_HOST = "not_host"
    NOT_ADMITTED = "not_admitted"
    SUSPENDED = "suspended"
    UNKNOWN_PARTICIPANT = "unknown_participant"
    INVALID_STATE = "invalid_state"
    TOO_MANY_ERRORS = "too_many_errors"
    SLOW_CONSUMER = "slow_consumer"
    SERVICE_UNAVAILABLE = "service_unavailable"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    INTERNAL_ERROR = "internal_error"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (4000-4999 are ours; see docs/protocol.md)."""

    NORMAL = 1000  # after ``leave``
    GOING_AWAY = 1001  # the server is shutting down: reconnect with the resume token
    MESSAGE_TOO_BIG = 1009  # a frame beyond the transport limit (uvicorn ``ws_max_size``)
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # a service the hub needs (Redis, the database) is down
    PROTOCOL_ERROR = 4400  # the first message was not a valid ``hello``
    UNAUTHENTICATED = 4401  # the join token is missing, invalid or expired
    FORBIDDEN = 4403  # posture refused or missing, wrong device, or denied by the host
    CONSULTATION_NOT_FOUND = 4404
    HELLO_TIMEOUT = 4408  # no ``hello`` within the hello timeout
    REPLACED = 4409  # a newer socket for the same participant took over
    CONSULTATION_CLOSED = 4410  # ended, cancelled or no-show
    TOO_MANY_ERRORS = 4429  # repeated bad or too-frequent messages
    SLOW_CONSUMER = 4430  # the client did not read its messages fast enough


# --- client -> server ----------------------------------------------------------------


class ClientMessage(BaseModel):
    """Fields every client message has."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    v: Literal[1]
    id: MessageId | None = None


class Hello(ClientMessage):
    """First message on every socket: authenticates (join token) and, for devices, posture."""

    type: Literal["hello"]
    join_token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, repr=False)
    posture_token: str | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_CHARS, repr=False)
    posture_proof: str | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_CHARS, repr=False)
    resume_token: ResumeToken | None = Field(default=None, repr=False)


class Ping(ClientMessage):
    """Keep-alive and round-trip probe; answered by ``pong``."""

    type: Literal["ping"]


class Leave(ClientMessage):
    """Leave the consultation now (no grace period)."""

    type: Literal["leave"]


class Admit(ClientMessage):
    """Host: let a waiting participant into the call."""

    type: Literal["admit"]
    participant: ParticipantId


class Deny(ClientMessage):
    """Host: refuse a waiting participant; their socket is closed."""

    type: Literal["deny"]
    participant: ParticipantId
    reason: Reason | None = None


class ReturnToWaiting(ClientMessage):
    """Host: send an admitted participant back to the waiting room."""

    type: Literal["return_to_waiting"]
    participant: ParticipantId
    reason: Reason | None = None


class Start(ClientMessage):
    """Host: make the consultation live (identity confirmed and consent recorded)."""

    type: Literal["start"]


class End(ClientMessage):
    """Host: end the consultation for everyone."""

    type: Literal["end"]
    reason: Reason | None = None


class Offer(ClientMessage):
    """SDP offer to one admitted participant (first connection or renegotiation)."""

    type: Literal["offer"]
    to: ParticipantId
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    connection_id: ConnectionId


class Answer(ClientMessage):
    """SDP answer to one admitted participant."""

    type: Literal["answer"]
    to: ParticipantId
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    connection_id: ConnectionId


class Ice(ClientMessage):
    """One trickled ICE candidate (empty ``candidate``: end of candidates)."""

    type: Literal["ice"]
    to: ParticipantId
    candidate: str = Field(default="", max_length=MAX_CANDIDATE_CHARS)
    sdpMid: str | None = Field(default=None, max_length=64)  # the WebRTC spelling
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=64)  # the WebRTC spelling
    usernameFragment: str | None = Field(default=None, max_length=256)  # the WebRTC spelling
    connection_id: ConnectionId | None = None


class Posture(ClientMessage):
    """Re-attestation during a call: a fresh posture token before the current one expires."""

    type: Literal["posture"]
    posture_token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS, repr=False)
    posture_proof: str | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_CHARS, repr=False)


Inbound = Annotated[
    Hello | Ping | Leave | Admit | Deny | ReturnToWaiting | Start | End | Offer | Answer | Ice | Posture,
    Field(discriminator="type"),
]
RELAY_TYPES = frozenset({"offer", "answer", "ice"})
HOST_TYPES = frozenset({"admit", "deny", "return_to_waiting", "start", "end"})
CLIENT_TYPES = frozenset(
    {"hello", "ping", "leave", "posture", *HOST_TYPES, *RELAY_TYPES},
)
_INBOUND: TypeAdapter[Inbound] = TypeAdapter(Inbound)


class ProtocolError(Exception):
    """An inbound message that cannot be accepted; ``code`` is an :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def parse_client_message(raw: str | bytes) -> Inbound:
    """Validate one inbound frame; raise :class:`ProtocolError` naming what is wrong."""
    try:
        return _INBOUND.validate_json(raw)
    except ValidationError:
        pass
    raise _diagnose(raw)


def _diagnose(raw: str | bytes) -> ProtocolError:
    """The precise reason a frame failed (slow path: only for bad messages)."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):
        return ProtocolError(ErrorCode.BAD_JSON, "The message is not valid JSON")
    if not isinstance(data, dict):
        return ProtocolError(ErrorCode.INVALID_MESSAGE, "A message must be a JSON object")
    ref = data.get("id") if isinstance(data.get("id"), str) and len(data["id"]) <= 64 else None
    if data.get("v") != PROTOCOL_VERSION:
        return ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"Protocol version {PROTOCOL_VERSION} is the only one supported",
            ref=ref,
        )
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        shown = kind if isinstance(kind, str) and kind.isidentifier() and len(kind) <= 32 else "?"
        return ProtocolError(ErrorCode.UNKNOWN_TYPE, f'Unknown message type "{shown}"', ref=ref)
    try:
        _INBOUND.validate_python(data)
    except ValidationError as exc:
        # Name the fields only: values may be SDP or tokens.
        fields = sorted(
            {".".join(str(p) for p in err["loc"][1:]) or "message" for err in exc.errors()},
        )
        return ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"Invalid {kind} message: {', '.join(fields)}", ref=ref
        )
    return ProtocolError(ErrorCode.INVALID_MESSAGE, f"Invalid {kind} message", ref=ref)  # pragma: no cover


# --- server -> client ----------------------------------------------------------------


class ServerMessage(BaseModel):
    """Fields every server message has."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    v: Literal[1] = 1

    def wire(self) -> str:
        """The JSON text frame (``from`` spelled as on the wire)."""
        return self.model_dump_json(by_alias=True, exclude_none=False)


class ParticipantView(BaseModel):
    """What others may know about a participant (never its device, tokens or address)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    role: Role
    name: str
    status: Status
    connected: bool


class IceServerView(BaseModel):
    """An ``RTCIceServer`` dictionary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str]
    username: str | None = None
    credential: str | None = Field(default=None, repr=False)


class LimitsView(BaseModel):
    """The limits the server enforces on this connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_message_bytes: int
    rate_per_s: float
    burst: int


class Welcome(ServerMessage):
    """Answer to a good ``hello``: who you are, where you wait, how to reach TURN."""

    type: Literal["welcome"] = "welcome"
    participant_id: str
    role: Role
    name: str
    consultation_id: str
    consultation_state: ConsultationState
    status: Status
    resumed: bool
    resume_token: str = Field(repr=False)
    resume_grace_s: int
    ice_servers: list[IceServerView]
    ice_policy: Literal["relay", "all"]
    participants: list[ParticipantView]
    limits: LimitsView
    posture_expires_at: int | None = None
    ice_expires_at: int | None = None


class IceServers(ServerMessage):
    """Fresh TURN credentials, before the current ones expire: use them for every new peer connection.

    Peer connections already up keep their TURN allocation (coturn checks a credential's
    expiry only when an allocation is made); recoveries and new peers need these.
    """

    type: Literal["ice_servers"] = "ice_servers"
    ice_servers: list[IceServerView]
    ice_policy: Literal["relay", "all"]
    expires_at: int


class Admitted(ServerMessage):
    """You were admitted; ``participants`` are the others now in the call."""

    type: Literal["admitted"] = "admitted"
    participants: list[ParticipantView]


class Denied(ServerMessage):
    """The host refused you; the socket closes next (4403)."""

    type: Literal["denied"] = "denied"
    reason: str | None = None


class Returned(ServerMessage):
    """You are back in the waiting room (the host sent you back, or the host left)."""

    type: Literal["returned"] = "returned"
    reason: str | None = None


class Suspended(ServerMessage):
    """Your device's posture lapsed or was refused: nothing is relayed until you re-attest."""

    type: Literal["suspended"] = "suspended"
    reason: str


class PostureAccepted(ServerMessage):
    """A ``posture`` message was accepted; send the next one before ``expires_at``."""

    type: Literal["posture.accepted"] = "posture.accepted"
    ref: str | None = None
    expires_at: int


ParticipantEventType = Literal[
    "participant.joined",
    "participant.admitted",
    "participant.denied",
    "participant.returned",
    "participant.suspended",
    "participant.disconnected",
    "participant.resumed",
    "participant.left",
]


class ParticipantEvent(ServerMessage):
    """Something happened to another participant."""

    type: ParticipantEventType
    participant: ParticipantView
    reason: str | None = None


class ConsultationEvent(ServerMessage):
    """The consultation went live or ended."""

    type: Literal["consultation.live", "consultation.ended"]
    reason: str | None = None


class Resync(ServerMessage):
    """Messages may have been lost between server nodes: here is the state as it stands.

    Sent after the node lost its connection to Redis (what was published meanwhile is
    gone) or found Redis had lost the consultation's presence. The client replaces what it
    believes with this: its own ``status``, ``consultation_state`` and the ``participants``
    it may see (as in ``admitted``); media to admitted participants that broke is renegotiated.
    """

    type: Literal["resync"] = "resync"
    reason: Literal["bus_interrupted", "presence_lost"]
    status: Status
    consultation_state: ConsultationState
    participants: list[ParticipantView]


class Relayed(ServerMessage):
    """An offer or answer from another participant (as sent, with ``from``; see :func:`relay_frame`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type: Literal["offer", "answer"]
    from_: str = Field(alias="from")
    sdp: str
    connection_id: str


class RelayedIce(ServerMessage):
    """An ICE candidate from another participant (as sent, with ``from``; see :func:`relay_frame`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type: Literal["ice"] = "ice"
    from_: str = Field(alias="from")
    candidate: str
    sdpMid: str | None = None  # the WebRTC spelling
    sdpMLineIndex: int | None = None  # the WebRTC spelling
    usernameFragment: str | None = None  # the WebRTC spelling
    connection_id: str | None = None


class Ack(ServerMessage):
    """A control message (with an ``id``) was carried out."""

    type: Literal["ack"] = "ack"
    ref: str


class Pong(ServerMessage):
    """Answer to ``ping``."""

    type: Literal["pong"] = "pong"
    ref: str | None = None


class Replaced(ServerMessage):
    """Another socket for the same participant took over; this one closes next (4409)."""

    type: Literal["replaced"] = "replaced"


class Error(ServerMessage):
    """Something the client sent was refused; the socket stays open unless a close follows."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    ref: str | None = None


def error_frame(code: ErrorCode, message: str, ref: str | None = None) -> str:
    """The text frame of an ``error`` message."""
    return Error(code=code, message=message, ref=ref).wire()


def relay_frame(raw: str, sender: str) -> str:
    """The frame the recipient of a relayed offer/answer/ice gets: the sender's message plus ``from``.

    ``raw`` has been validated (:func:`parse_client_message`: a JSON object with only the
    fields of :class:`Offer`/:class:`Answer`/:class:`Ice`, so no ``from`` of its own), and
    ``sender`` is a participant id (no quote, no backslash). Splicing ``from`` in front keeps
    the hot path free of a second encoding: the SDP is never re-escaped. The recipient also
    sees the sender's ``to`` (itself) and ``id``; see :class:`Relayed` and :class:`RelayedIce`.
    """
    body = raw.lstrip()
    return '{"from":"' + sender + '",' + body[1:]
