"""Verifying posture tokens on use: ``verify_posture`` and the context a route receives.

A posture token alone proves little: it is a bearer JWT. On every use the server checks

* the token itself (signature, ``aud`` ``telemed-posture``, times, ≤ 10 min lifetime);
* that the device is **still enrolled and active** — revocation takes effect on the next
  request, not when the token expires — and still holds the key the token is bound to;
* that the device has not failed a posture check since the token was issued — a device
  that turns non-compliant cannot fall back on the token of its last pass;
* when a request proof is given (``X-Posture-Proof``), that it is signed by the key whose
  thumbprint is the token's ``cnf.jkt`` (``key_binding_mismatch`` otherwise), for this
  method, URL and token, made within the last minute, and never seen before by any node
  (``proof_replayed``; ``server.devices.replay`` — with Redis configured, a replay check
  that cannot be made refuses the request ``service_unavailable``).

HTTP routes take the ``CompliantDevice`` dependency (``server.deps``), which insists on
both headers. The signalling hub calls ``verify_posture`` itself with method ``WS``, the
socket URL and ``nonce`` = the join token's jti.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlmodel import Session

from device_policy.errors import (
    DevicePolicyError,
    DeviceRevoked,
    InvalidPostureToken,
    InvalidRequestProof,
    KeyBindingMismatch,
    PostureTokenExpired,
    ProofReplayed,
    UnknownDevice,
)
from device_policy.keys import b64url_decode
from device_policy.posture_token import PostureClaims, verify_posture_token
from device_policy.proof import MAX_PROOF_CHARS, verify_request_proof
from server.audit import record_event
from server.db import utcnow
from server.devices.attest import load_active_device
from server.devices.checks import failed_since_issue
from server.devices.models import DeviceKind
from server.errors import InvalidToken
from server.security.jwt import TokenExpired

if TYPE_CHECKING:
    from server.services import Services

POSTURE_TOKEN_HEADER = "X-Posture-Token"  # noqa: S105 - a header name
POSTURE_PROOF_HEADER = "X-Posture-Proof"


@dataclass(frozen=True)
class PostureContext:
    """A compliant device, as a verified posture token (and proof) describe it."""

    device_id: str
    device_kind: DeviceKind
    thumbprint: str
    jti: str
    expires_at: datetime
    policy_version: str


def record_refused_device(
    *, session: Session, action: str, device_id: str, exc: DevicePolicyError, jti: str | None = None
) -> None:
    """Audit a request refused because of its device's state (``device_revoked``, ``unknown_device``)."""
    record_event(
        session=session,
        action=action,
        outcome="denied",
        actor_id=device_id,
        actor_role="device",
        device_id=device_id,
        authority_jti=jti,
        detail={"reason": exc.code},
    )


def verify_posture(
    *,
    services: Services,
    session: Session,
    token: str,
    proof: str | None,
    method: str,
    url: str,
    nonce: str | None = None,
    now: datetime | None = None,
) -> PostureContext:
    """Verify a posture token, that its device is still active, and (given a proof) the key binding."""
    now = now or utcnow()
    claims = _verified_claims(services=services, token=token)
    try:
        device = load_active_device(session=session, device_id=claims.device_id)
    except (DeviceRevoked, UnknownDevice) as exc:
        # A token we signed, for a device that may no longer act: a decision worth keeping.
        record_refused_device(
            session=session, action="device.posture", device_id=claims.device_id, exc=exc, jti=claims.jti
        )
        raise
    if claims.jkt != device.key_thumbprint:
        raise KeyBindingMismatch(
            f'Posture token "{claims.jti}" is bound to a key device "{device.id}" no longer holds'
        )
    if claims.device_kind.value != DeviceKind(device.kind).value:
        raise InvalidPostureToken(f'Posture token "{claims.jti}" names another kind of device')
    issued_at = datetime.fromtimestamp(claims.iat, UTC)
    if failed_since_issue(session=session, device_id=device.id, token_jti=claims.jti, issued_at=issued_at):
        raise InvalidPostureToken(
            f'Posture token "{claims.jti}" predates a failed posture check of device "{device.id}"; '
            "attest again"
        )
    if proof is not None:
        verify_request_proof(
            proof,
            expected_thumbprint=claims.jkt,
            method=method,
            url=url,
            token_jti=claims.jti,
            nonce=nonce if nonce is not None else claimed_nonce(proof),
            now=now,
        )
        if not services.proof_replay.first_use(proof, now=now):
            raise ProofReplayed(f'This proof for posture token "{claims.jti}" has already been used')
    return PostureContext(
        device_id=device.id,
        device_kind=DeviceKind(device.kind),
        thumbprint=claims.jkt,
        jti=claims.jti,
        expires_at=datetime.fromtimestamp(claims.exp, UTC),
        policy_version=claims.policy_version,
    )


def _verified_claims(*, services: Services, token: str) -> PostureClaims:
    try:
        return verify_posture_token(signer=services.jwt, token=token)
    except TokenExpired:
        raise PostureTokenExpired("The posture token has expired; attest again") from None
    except InvalidToken as exc:
        # The JWT layer's refusal, in the posture vocabulary the device agent understands.
        raise InvalidPostureToken(f"The posture token was refused: {exc.detail}") from None


def claimed_nonce(proof: str) -> str:
    """The ``nonce`` a proof claims (unverified: ``verify_request_proof`` then checks it)."""
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_CHARS or proof.count(".") != 1:
        raise InvalidRequestProof("A proof is two base64url parts joined by a dot")
    try:
        payload = json.loads(b64url_decode(proof.split(".", 1)[0]))
    except (ValueError, RecursionError):
        raise InvalidRequestProof("The proof payload is not a valid proof") from None
    nonce = payload.get("nonce") if isinstance(payload, dict) else None
    if not isinstance(nonce, str) or not nonce:
        raise InvalidRequestProof("The proof carries no nonce")
    return nonce
