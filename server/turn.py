"""Ephemeral TURN credentials for coturn's ``use-auth-secret`` mode, and ICE policy per endpoint.

coturn's "TURN REST API" (``use-auth-secret`` + ``static-auth-secret=<secret>`` in
turnserver.conf) accepts any username of the form ``<expiry-unix-time>:<user>`` whose
password is ``base64(HMAC-SHA1(secret, username))``; it refuses the allocation once the
expiry time has passed. The server and coturn share only the secret, so credentials can be
minted per participant without a user database, and a leaked credential dies by itself.

Pure functions: no I/O, no clock reads (``now`` is passed in), no FastAPI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

IcePolicy = Literal["relay", "all"]

# coturn's default ``rest-api-separator``; a participant id containing it would let the
# id's own prefix be read as the expiry.
SEPARATOR = ":"
MAX_PARTICIPANT_ID_LENGTH = 128
# A TTL beyond a day defeats the point of ephemeral credentials (the draft recommends one day).
MAX_TTL = timedelta(days=1)
# How long before its credentials expire a participant in a call is given fresh ones.
REFRESH_LEAD = timedelta(minutes=5)


class TurnCredentialError(ValueError):
    """The request for TURN credentials cannot be honoured as given."""

    code = "invalid_turn_request"
    status = 422
    title = "Invalid TURN credential request"


class InvalidParticipantId(TurnCredentialError):
    """The participant id cannot be embedded in a coturn REST API username."""

    code = "invalid_participant_id"
    title = "Invalid participant id for TURN"


class InvalidTtl(TurnCredentialError):
    """The credential lifetime is not positive or is longer than allowed."""

    code = "invalid_ttl"
    title = "Invalid TURN credential lifetime"


class EndpointKind(StrEnum):
    """What kind of endpoint a participant joins from; decides its ICE transport policy."""

    ROOM_ENDPOINT = "room_endpoint"
    PRISON_LAPTOP = "prison_laptop"
    SPECIALIST_BROWSER = "specialist_browser"


# Endpoints inside a prison never expose their addresses or talk to a peer directly: all
# their media goes through our TURN server. A hospital specialist may connect directly.
_ICE_POLICIES: dict[EndpointKind, IcePolicy] = {
    EndpointKind.ROOM_ENDPOINT: "relay",
    EndpointKind.PRISON_LAPTOP: "relay",
    EndpointKind.SPECIALIST_BROWSER: "all",
}


@dataclass(frozen=True)
class TurnCredentials:
    """Credentials for one participant, shaped like a WebRTC ``RTCIceServer`` plus its TTL."""

    username: str
    credential: str = field(repr=False)
    ttl_s: int
    urls: list[str]

    @property
    def expires_at(self) -> int:
        """When coturn stops accepting these credentials for a new allocation (Unix time, s)."""
        return int(self.username.split(SEPARATOR, 1)[0])

    def as_ice_server(self) -> dict[str, object]:
        """The ``RTCIceServer`` dictionary a browser or the clinic client passes to WebRTC."""
        return {"urls": list(self.urls), "username": self.username, "credential": self.credential}


def turn_password(*, secret: bytes, username: str) -> str:
    """coturn's REST API password for a username: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_participant_id(participant_id: str) -> None:
    """Refuse ids that coturn would mis-parse or that could not travel in a STUN USERNAME."""
    if not participant_id:
        raise InvalidParticipantId("Participant id is empty")
    if len(participant_id) > MAX_PARTICIPANT_ID_LENGTH:
        raise InvalidParticipantId(f"Participant id is longer than {MAX_PARTICIPANT_ID_LENGTH} characters")
    if SEPARATOR in participant_id:
        raise InvalidParticipantId(f'Participant id must not contain "{SEPARATOR}"')
    if not participant_id.isascii() or not participant_id.isprintable() or " " in participant_id:
        raise InvalidParticipantId("Participant id must be printable ASCII without spaces")


def turn_credentials(
    *,
    secret: bytes,
    participant_id: str,
    ttl: timedelta,
    now: datetime,
    urls: list[str],
) -> TurnCredentials:
    """Mint coturn ``use-auth-secret`` credentials for a participant, valid from now for ttl."""
    if not secret:
        raise TurnCredentialError("TURN secret is empty")
    if now.tzinfo is None:
        raise TurnCredentialError("now must be timezone-aware")
    if ttl < timedelta(seconds=1) or ttl > MAX_TTL:
        raise InvalidTtl(f"TTL must be between 1 s and {int(MAX_TTL.total_seconds())} s")
    if not urls:
        raise TurnCredentialError("At least one TURN url is required")
    validate_participant_id(participant_id)
    ttl_s = int(ttl.total_seconds())
    expiry = int(now.timestamp()) + ttl_s
    username = f"{expiry}{SEPARATOR}{participant_id}"
    return TurnCredentials(
        username=username,
        credential=turn_password(secret=secret, username=username),
        ttl_s=ttl_s,
        urls=list(urls),
    )


def refresh_time(*, expires_at: float, ttl: timedelta, lead: timedelta = REFRESH_LEAD) -> float:
    """When to replace credentials expiring at ``expires_at``: ``lead`` before, or a third of a short TTL."""
    return expires_at - min(lead, ttl / 3).total_seconds()


def ice_policy_for(kind: EndpointKind | str) -> IcePolicy:
    """ICE transport policy for an endpoint kind: relay-only inside prisons, else all."""
    try:
        endpoint = EndpointKind(kind)
    except ValueError:
        raise TurnCredentialError(f'Unknown endpoint kind "{kind}"') from None
    return _ICE_POLICIES[endpoint]
