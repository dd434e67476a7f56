"""The signing key ring: creation, rotation, JWKS publication.

Rotation adds a new key and makes it the signer; the previous keys keep verifying
until ``verify_until`` (now + the longest token lifetime), so tokens already issued
stay good until they expire. Private keys are stored encrypted with the server secret.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine
from sqlmodel import Session, select

from server.db import session_scope, utcnow
from server.security.models import SigningKey


@dataclass(frozen=True)
class LoadedKey:
    """A key ready for python-jose: PEMs in memory, never logged."""

    kid: str
    private_pem: str | None
    public_pem: str
    public_jwk: dict[str, str]
    created_at: datetime
    retired: bool

    def __repr__(self) -> str:
        return f"LoadedKey(kid={self.kid!r}, retired={self.retired})"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """The RFC 7517 JWK of a P-256 public key."""
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64u(numbers.x.to_bytes(32, "big")),
        "y": _b64u(numbers.y.to_bytes(32, "big")),
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
    }


def create_signing_key(*, session: Session, secret: bytes) -> SigningKey:
    """Generate a P-256 key, store it encrypted, and make it the active signer."""
    private = ec.generate_private_key(ec.SECP256R1())
    kid = f"{utcnow():%Y%m%d}-{secrets.token_hex(4)}"
    row = SigningKey(
        kid=kid,
        private_pem_encrypted=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(secret),
        ).decode(),
        public_pem=private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )
    session.add(row)
    return row


def rotate_signing_key(*, session: Session, secret: bytes, retention: timedelta) -> SigningKey:
    """Retire the current signers (still verifying for ``retention``) and add a new one."""
    now = utcnow()
    for old in session.exec(select(SigningKey).where(SigningKey.retired_at == None)):  # noqa: E711
        old.retired_at = now
        old.verify_until = now + retention
        session.add(old)
    return create_signing_key(session=session, secret=secret)


def ensure_signing_key(*, session: Session, secret: bytes) -> None:
    """Create the first signing key if there is none."""
    if session.exec(select(SigningKey).where(SigningKey.retired_at == None)).first() is None:  # noqa: E711
        create_signing_key(session=session, secret=secret)


class KeyRing:
    """The keys in memory, refreshed from the database every ``REFRESH_S`` and on an unknown kid.

    The periodic refresh is how a running process picks up ``telemed keys rotate`` (run by
    another process): within ``REFRESH_S`` it signs with the new key, publishes it in the JWKS,
    keeps verifying the retired ones until their ``verify_until``, and drops them after.
    """

    #: at most one reload per this many seconds for an unknown kid, so forged kids cannot hammer the database
    RELOAD_INTERVAL_S = 5.0
    #: the longest a process keeps signing with a key after it was rotated out
    REFRESH_S = 30.0

    def __init__(self, *, engine: Engine, secret: bytes, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._secret = secret
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}
        self._signer: LoadedKey | None = None
        self._loaded_at = 0.0

    def load(self) -> None:
        """(Re)load every key that still verifies."""
        now = utcnow()
        with session_scope(self._engine) as session:
            rows = list(session.exec(select(SigningKey)))
        keys: dict[str, LoadedKey] = {}
        signer: LoadedKey | None = None
        for row in rows:
            if row.verify_until is not None and row.verify_until < now:
                continue
            public = serialization.load_pem_public_key(row.public_pem.encode())
            assert isinstance(public, ec.EllipticCurvePublicKey)  # noqa: S101 - we only store EC keys
            private_pem = None
            if row.retired_at is None:
                private = serialization.load_pem_private_key(row.private_pem_encrypted.encode(), self._secret)
                private_pem = private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
            key = LoadedKey(
                kid=row.kid,
                private_pem=private_pem,
                public_pem=row.public_pem,
                public_jwk=public_jwk(public, row.kid),
                created_at=row.created_at,
                retired=row.retired_at is not None,
            )
            keys[row.kid] = key
            if private_pem and (signer is None or key.created_at > signer.created_at):
                signer = key
        with self._lock:
            self._keys, self._signer, self._loaded_at = keys, signer, self._clock()

    def _stale(self) -> bool:
        return self._clock() - self._loaded_at > self.REFRESH_S

    def signer(self) -> LoadedKey:
        """The key new tokens are signed with."""
        if self._signer is None or self._stale():
            self.load()
        if self._signer is None:
            raise RuntimeError("no active signing key; run `telemed db upgrade` or `telemed keys rotate`")
        return self._signer

    def verifier(self, kid: str) -> LoadedKey | None:
        """The key for ``kid``, reloading once if it is new to this process."""
        if self._stale():
            self.load()
        key = self._keys.get(kid)
        if key is None and self._clock() - self._loaded_at > self.RELOAD_INTERVAL_S:
            self.load()
            key = self._keys.get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set, for ``/.well-known/jwks.json``."""
        if not self._keys or self._stale():
            self.load()
        return {"keys": [k.public_jwk for k in sorted(self._keys.values(), key=lambda k: k.created_at)]}
