"""What the records library needs from its host, as Protocols and plain value types.

``records`` never imports the server. The server passes these in (see
``server/records_wiring.py``): a token signer (the server's ``JwtService`` satisfies
:class:`TokenSigner`), a consultation lookup, a request-proof verifier for the device
key, and a join-token verifier for specialists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session

__all__ = [
    "Actor",
    "ConsultationLookup",
    "ConsultationView",
    "DevicePosture",
    "JoinTokenVerifier",
    "Participant",
    "PostureCheck",
    "ProofVerifier",
    "RequestMeta",
    "TokenSigner",
]


class TokenSigner(Protocol):
    """Issues and verifies signed JWTs (ES256, ``iss``/``aud``/``exp``/``jti`` checked).

    ``verify`` raises on any refusal; an exception whose ``code`` is ``token_expired`` or
    ``wrong_audience`` is reported as such, any other as an invalid grant.
    """

    def issue(self, *, subject: str, audience: str, ttl: timedelta, claims: Mapping[str, Any]) -> str:
        """Sign a token for ``subject`` and ``audience`` living ``ttl`` with extra ``claims``."""
        ...

    def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        """Check signature, issuer, audience and times; return all claims or raise."""
        ...


@dataclass(frozen=True)
class ConsultationView:
    """The facts about a consultation that record access depends on."""

    id: str
    patient_id: str
    host_user_id: str
    state: str
    scheduled_end: datetime
    room_device_id: str | None = None
    specialist_participants: frozenset[str] = field(default_factory=frozenset)
    """Participant ids (``specialist:<invite_id>``) of the specialists invited to it."""


ConsultationLookup = Callable[[Session, str], ConsultationView | None]
"""``lookup(session, consultation_id)``: the consultation, or None if there is none."""


@dataclass(frozen=True)
class Actor:
    """A signed-in person acting on records."""

    user_id: str
    role: str
    establishment: str | None = None
    token_jti: str | None = None


@dataclass(frozen=True)
class DevicePosture:
    """A device whose posture token (and proof for this request) verified."""

    device_id: str
    device_kind: str
    thumbprint: str
    jti: str


@dataclass(frozen=True)
class PostureCheck:
    """The posture this request showed: a device, or the code of why there is none."""

    posture: DevicePosture | None
    failure: str | None = None


class ProofVerifier(Protocol):
    """Checks an ``X-Posture-Proof`` for this request against a grant's ``cnf.jkt``.

    Raises :class:`records.errors.KeyBindingMismatch` when another key signed the proof
    and :class:`records.errors.GrantInvalid` for any other defect (stale, replayed, for
    another URL or token).
    """

    def __call__(self, *, proof: str, thumbprint: str, token_jti: str, method: str, url: str) -> None:
        """Verify the proof or raise."""
        ...


@dataclass(frozen=True)
class Participant:
    """A consultation participant, as a verified join token names them."""

    participant_id: str
    consultation_id: str
    role: str
    jti: str


JoinTokenVerifier = Callable[[str], Participant]
"""Verify a join token (raise on any defect) and return who it names."""


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from, for the audit trail."""

    request_id: str | None = None
    ip: str | None = None
    method: str = ""
    url: str = ""
