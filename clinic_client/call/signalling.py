"""The seam between the call and the signalling client, and the payloads that cross it.

The signalling client implements :class:`SignallingChannel` (send one message to one
participant) and feeds every inbound offer/answer/ice message to
``await call.handle_remote(from_id, kind, payload)``. Payloads are plain JSON objects:

``offer`` / ``answer``::

    {"type": "offer", "sdp": "v=0...", "connection_id": "3f2a..."}

``ice`` (what a browser's ``RTCIceCandidate.toJSON()`` gives, plus ``connection_id``)::

    {"candidate": "candidate:1 1 udp 2122260223 10.0.0.5 54321 typ host",
     "sdpMid": "0", "sdpMLineIndex": 0, "connection_id": "3f2a..."}

An empty ``candidate`` means end-of-candidates. ``connection_id`` names one
RTCPeerConnection: the offerer picks a fresh one for every new peer connection (first
connect and every recovery), the answerer echoes it. An offer with a new id replaces the
previous peer connection; an offer with the current id renegotiates it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinic_client.call.errors import InvalidSignal

SignalKind = Literal["offer", "answer", "ice"]
SIGNAL_KINDS: tuple[SignalKind, ...] = ("offer", "answer", "ice")

MAX_SDP_LENGTH = 64 * 1024
CONNECTION_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class SignallingChannel(Protocol):
    """Delivers a call's signalling messages to another participant."""

    async def send(self, to_participant_id: str, kind: SignalKind, payload: dict[str, Any]) -> None:
        """Send one offer, answer or ice message to one participant."""
        ...


class DescriptionPayload(BaseModel):
    """An SDP offer or answer for one peer connection."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["offer", "answer"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP_LENGTH)
    connection_id: str = Field(pattern=CONNECTION_ID_PATTERN)


class IcePayload(BaseModel):
    """One trickled ICE candidate (or end-of-candidates when ``candidate`` is empty)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    candidate: str = Field(default="", max_length=1024)
    sdp_mid: str | None = Field(default=None, alias="sdpMid", max_length=64)
    sdp_mline_index: int | None = Field(default=None, alias="sdpMLineIndex", ge=0, le=64)
    connection_id: str | None = Field(default=None, pattern=CONNECTION_ID_PATTERN)


def parse_description(kind: SignalKind, payload: dict[str, Any]) -> DescriptionPayload:
    """Validate an offer/answer payload; the payload's type must match the message kind."""
    try:
        parsed = DescriptionPayload.model_validate(payload)
    except ValidationError as exc:
        raise InvalidSignal(f"Invalid {kind} payload: {_fields(exc)}") from None
    if parsed.type != kind:
        raise InvalidSignal(f'Payload of type "{parsed.type}" sent as "{kind}"')
    return parsed


def parse_ice(payload: dict[str, Any]) -> IcePayload:
    """Validate an ice payload."""
    try:
        parsed = IcePayload.model_validate(payload)
    except ValidationError as exc:
        raise InvalidSignal(f"Invalid ice payload: {_fields(exc)}") from None
    if parsed.candidate and parsed.sdp_mid is None and parsed.sdp_mline_index is None:
        raise InvalidSignal("ICE candidate needs sdpMid or sdpMLineIndex")
    return parsed


def description_payload(kind: Literal["offer", "answer"], sdp: str, connection_id: str) -> dict[str, Any]:
    """The JSON object for an outgoing offer or answer."""
    return DescriptionPayload(type=kind, sdp=sdp, connection_id=connection_id).model_dump()


def _fields(exc: ValidationError) -> str:
    # Name the bad fields only: values may be SDP, which is not for logs or error messages.
    names = sorted({".".join(str(p) for p in err["loc"]) or "payload" for err in exc.errors()})
    return ", ".join(names)
