"""Request proofs: show, per request, that the caller holds the key a posture token is bound to.

A small DPoP-like (RFC 9449) proof, without JWS: ::

    proof   = b64url(payload) "." b64url(signature)
    payload = canonical JSON {"htm", "htu", "iat", "jwk", "nonce", "token_jti"}
    signature = Ed25519(device key, PROOF_CONTEXT + payload)

``jwk`` is the device's public key (OKP JWK). The verifier checks the signature with it,
then that its RFC 7638 thumbprint equals the token's ``cnf.jkt`` — a posture token stolen
from one device and presented with another device's key fails with
``key_binding_mismatch``. ``htm``/``htu`` pin the request, ``token_jti`` the token,
``nonce`` a server-issued value (the server decides its freshness and single use) and
``iat`` the time.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device_policy.canonical import canonical_json
from device_policy.errors import (
    CanonicalJsonError,
    ClockSkew,
    InvalidRequestProof,
    KeyBindingMismatch,
    KeyMaterialError,
)
from device_policy.keys import (
    b64url_decode,
    b64url_encode,
    key_thumbprint,
    load_public_jwk,
    public_jwk,
)

PROOF_CONTEXT = b"telemed-request-proof-v1\x00"
DEFAULT_PROOF_MAX_SKEW = timedelta(seconds=60)
MAX_PROOF_CHARS = 2048


class RequestProof(BaseModel):
    """The verified content of a request proof."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    htm: str = Field(pattern=r"^[A-Z]{1,16}$")
    htu: str = Field(min_length=1, max_length=1024)
    iat: int = Field(ge=0)
    jwk: dict[str, str]
    nonce: str = Field(min_length=1, max_length=256)
    token_jti: str = Field(min_length=1, max_length=256)

    @property
    def thumbprint(self) -> str:
        """RFC 7638 thumbprint of the key that signed the proof."""
        return key_thumbprint(load_public_jwk(self.jwk))


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def normalize_htu(url: str) -> str:
    """The URL as proofs carry it: scheme and host lower-cased, no default port, query or fragment."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError("a proof URL needs a scheme and a host")
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    # "wss://h:443/x" and "wss://h/x" are one URL; a client library may send either Host.
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and netloc.endswith(f":{default}") and not netloc.endswith("]"):
        netloc = netloc.removesuffix(f":{default}")
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def sign_request_proof(
    private_key: Ed25519PrivateKey,
    *,
    method: str,
    url: str,
    token_jti: str,
    iat: datetime,
    nonce: str,
) -> str:
    """Make a proof that this request, with this token, comes from the holder of the key."""
    if iat.tzinfo is None:
        raise ValueError("iat must be timezone-aware")
    payload = RequestProof(
        htm=method.upper(),
        htu=normalize_htu(url),
        iat=int(iat.timestamp()),
        jwk=public_jwk(private_key.public_key()),
        nonce=nonce,
        token_jti=token_jti,
    )
    body = canonical_json(payload.model_dump(mode="json"))
    signature = private_key.sign(PROOF_CONTEXT + body)
    return f"{b64url_encode(body)}.{b64url_encode(signature)}"


def verify_request_proof(
    proof: str,
    *,
    expected_thumbprint: str,
    method: str,
    url: str,
    token_jti: str,
    nonce: str,
    now: datetime,
    max_skew: timedelta = DEFAULT_PROOF_MAX_SKEW,
) -> RequestProof:
    """Check a proof against the token's ``cnf.jkt`` and this request; return its content."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    body, signature = _split(proof)
    claims = _parse(body)
    try:
        public_key = load_public_jwk(claims.jwk)
    except KeyMaterialError as exc:
        raise InvalidRequestProof(f"The proof key is not usable: {exc.detail}") from None
    try:
        public_key.verify(signature, PROOF_CONTEXT + body)
    except InvalidSignature:
        raise InvalidRequestProof("The proof signature does not verify with its key") from None
    if not hmac.compare_digest(key_thumbprint(public_key).encode(), expected_thumbprint.encode()):
        raise KeyBindingMismatch(
            f'The proof for token "{token_jti}" is signed by a key the token is not bound to'
        )
    expected = {
        "htm": method.upper(),
        "htu": normalize_htu(url),
        "token_jti": token_jti,
        "nonce": nonce,
    }
    for name, value in expected.items():
        if not hmac.compare_digest(str(getattr(claims, name)).encode(), value.encode()):
            raise InvalidRequestProof(f'The proof was made for another "{name}"')
    skew = datetime.fromtimestamp(claims.iat, UTC) - now
    if abs(skew) > max_skew:
        raise ClockSkew(
            f"The proof was made {abs(int(skew.total_seconds()))} s from the server time; "
            f"at most {int(max_skew.total_seconds())} s is allowed"
        )
    return claims


def _split(proof: str) -> tuple[bytes, bytes]:
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_CHARS or proof.count(".") != 1:
        raise InvalidRequestProof("A proof is two base64url parts joined by a dot")
    body_part, signature_part = proof.split(".")
    try:
        return b64url_decode(body_part), b64url_decode(signature_part)
    except ValueError:
        raise InvalidRequestProof("A proof is two base64url parts joined by a dot") from None


def _parse(body: bytes) -> RequestProof:
    try:
        raw: Any = json.loads(body)
        claims = RequestProof.model_validate(raw, strict=True)
        # Only the canonical spelling is accepted: one proof, one byte string.
        if canonical_json(raw) != body:
            raise InvalidRequestProof("The proof payload is not canonical JSON")
    except (ValueError, ValidationError, CanonicalJsonError, RecursionError):
        raise InvalidRequestProof("The proof payload is not a valid proof") from None
    return claims
