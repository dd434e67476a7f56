"""Join tokens: the signed ticket a participant presents to the signalling hub.

A join token is a JWT (audience ``telemed-signalling``) whose subject is the participant
id (``host:<user_id>``, ``room:<device_id>``, ``specialist:<invite_id>``) and whose claims
say which consultation (``cid``), in which role, under which display name, and from which
enrolled device (``device_id``, optional). It is valid from 15 minutes before the
scheduled start until 30 minutes after the scheduled end, whenever it is issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from server.consultations.models import Consultation
from server.errors import InvalidToken
from server.security.jwt import JwtService

SIGNALLING_AUDIENCE = "telemed-signalling"
EARLY_JOIN = timedelta(minutes=15)
LATE_LEAVE = timedelta(minutes=30)


class ParticipantRole(StrEnum):
    """How a participant takes part in a call."""

    HOST = "host"
    ROOM = "room"
    SPECIALIST = "specialist"


def participant_id(role: ParticipantRole, ident: str) -> str:
    """The participant id: ``host:<user_id>``, ``room:<device_id>`` or ``specialist:<invite_id>``."""
    return f"{role.value}:{ident}"


def join_window(consultation: Consultation) -> tuple[datetime, datetime]:
    """When a join token for ``consultation`` is valid: (not before, expires at)."""
    return consultation.scheduled_start - EARLY_JOIN, consultation.scheduled_end + LATE_LEAVE


@dataclass(frozen=True)
class JoinClaims:
    """What a verified join token says about its bearer."""

    participant_id: str
    consultation_id: str
    role: ParticipantRole
    name: str
    device_id: str | None
    jti: str
    not_before: datetime
    expires_at: datetime


def issue_join_token(
    *,
    jwt: JwtService,
    consultation: Consultation,
    participant_id: str,
    role: ParticipantRole,
    name: str,
    device_id: str | None = None,
    jti: str | None = None,
) -> str:
    """Sign a join token for one participant of ``consultation``, valid for its join window."""
    if not participant_id.startswith(f"{role.value}:"):
        raise ValueError(f"participant id does not match role {role.value!r}")
    not_before, expires_at = join_window(consultation)
    claims: dict[str, str] = {"cid": consultation.id, "role": role.value, "name": name}
    if device_id is not None:
        claims["device_id"] = device_id
    if jti is not None:
        claims["jti"] = jti
    return jwt.issue(
        subject=participant_id,
        audience=SIGNALLING_AUDIENCE,
        ttl=expires_at - not_before,
        claims=claims,
        not_before=not_before,
    )


def verify_join_token(*, jwt: JwtService, token: str) -> JoinClaims:
    """Check a join token (signature, audience, window) and return what it says."""
    claims = jwt.verify(token, audience=SIGNALLING_AUDIENCE)
    try:
        role = ParticipantRole(claims["role"])
        subject, cid, name = claims["sub"], claims["cid"], claims["name"]
    except (KeyError, ValueError) as exc:
        raise InvalidToken("The join token's claims are not valid") from exc
    device_id = claims.get("device_id")
    if (
        not isinstance(subject, str)
        or not subject.startswith(f"{role.value}:")
        or not isinstance(cid, str)
        or not isinstance(name, str)
        or not (device_id is None or isinstance(device_id, str))
    ):
        raise InvalidToken("The join token's claims are not valid")
    return JoinClaims(
        participant_id=subject,
        consultation_id=cid,
        role=role,
        name=name,
        device_id=device_id,
        jti=str(claims["jti"]),
        not_before=datetime.fromtimestamp(int(claims["nbf"]), UTC),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )
