"""Posture tokens: short JWTs saying "this device key passed this policy", bound to the key.

The library never signs JWTs itself: the caller passes a ``TokenSigner`` (the server's
JWT service satisfies it), so this module states only what a posture token claims::

    sub            device id
    aud            "telemed-posture"
    device_kind    prison_laptop | room_endpoint
    policy_version, policy_hash
    cnf            {"jkt": RFC 7638 thumbprint of the device key}
    iat, exp, jti  (+ iss, nbf from the signer); exp - iat ≤ 10 minutes

A token is usable only together with a request proof signed by the key whose
thumbprint is ``cnf.jkt`` (see ``device_policy.proof``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device_policy.errors import InvalidPostureToken, KeyBindingMismatch, TokenLifetimeTooLong
from device_policy.policy.identity import DeviceKind

POSTURE_AUDIENCE = "telemed-posture"
MAX_POSTURE_TTL = timedelta(minutes=10)
DEFAULT_POSTURE_TTL = timedelta(minutes=5)


class TokenSigner(Protocol):
    """Issues and verifies signed JWTs; implemented by the server's JWT service."""

    def issue(self, *, subject: str, audience: str, ttl: timedelta, claims: Mapping[str, Any]) -> str:
        """Sign a token for ``subject`` and ``audience`` living ``ttl`` with extra ``claims``."""
        ...

    def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        """Check signature, issuer, audience and times; return all claims or raise."""
        ...


class Confirmation(BaseModel):
    """RFC 7800 ``cnf``: the key the token is bound to, by JWK thumbprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jkt: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")


class PostureClaims(BaseModel):
    """The claims of a verified posture token."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str = Field(min_length=1)
    aud: str
    jti: str = Field(min_length=1)
    iat: int
    exp: int
    device_kind: DeviceKind
    policy_version: str
    policy_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    cnf: Confirmation

    @property
    def device_id(self) -> str:
        """The device the token was issued to."""
        return self.sub

    @property
    def jkt(self) -> str:
        """Thumbprint of the device key the token is bound to."""
        return self.cnf.jkt


def issue_posture_token(
    *,
    signer: TokenSigner,
    device_id: str,
    device_kind: DeviceKind,
    thumbprint: str,
    policy_version: str,
    policy_hash: str,
    ttl: timedelta = DEFAULT_POSTURE_TTL,
    jti: str | None = None,
) -> str:
    """Issue a posture token for a compliant device, bound to its key (ttl ≤ 10 min)."""
    if ttl > MAX_POSTURE_TTL:
        raise TokenLifetimeTooLong(
            f"A posture token may live at most {int(MAX_POSTURE_TTL.total_seconds())} s, "
            f"not {int(ttl.total_seconds())} s"
        )
    if ttl <= timedelta(0):
        raise ValueError("a posture token must live a positive time")
    claims: dict[str, Any] = {
        "device_kind": DeviceKind(device_kind).value,
        "policy_version": policy_version,
        "policy_hash": policy_hash,
        "cnf": Confirmation(jkt=thumbprint).model_dump(),
    }
    if jti is not None:
        claims["jti"] = jti
    return signer.issue(subject=device_id, audience=POSTURE_AUDIENCE, ttl=ttl, claims=claims)


def verify_posture_token(
    *, signer: TokenSigner, token: str, expected_thumbprint: str | None = None
) -> PostureClaims:
    """Verify a posture token; with ``expected_thumbprint``, refuse one bound to another key."""
    raw = signer.verify(token, audience=POSTURE_AUDIENCE)
    try:
        claims = PostureClaims.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise InvalidPostureToken(
            "The token lacks posture claims: " + ", ".join(fields), jti=_jti(raw)
        ) from None
    if claims.aud != POSTURE_AUDIENCE:
        raise InvalidPostureToken("The token is not a posture token", jti=claims.jti)
    if claims.exp - claims.iat > MAX_POSTURE_TTL.total_seconds():
        raise InvalidPostureToken(
            "The token lives longer than a posture token may (10 minutes)", jti=claims.jti
        )
    if expected_thumbprint is not None and not hmac.compare_digest(
        claims.jkt.encode(), expected_thumbprint.encode()
    ):
        raise KeyBindingMismatch(
            f'Posture token "{claims.jti}" is bound to another device key', jti=claims.jti
        )
    return claims


def _jti(raw: Mapping[str, Any]) -> str | None:
    jti = raw.get("jti")
    return jti if isinstance(jti, str) else None
