"""Keys derived from the server secret (``TELEMED_SECRET_KEY``) for the admin console.

The server secret already protects the JWT signing keys at rest (``server.security.keys``),
so an operator keeps it as carefully as those keys. From it HKDF-SHA256 derives one
independent key per use (the ``info`` label keeps them apart):

* TOTP secrets are sealed with AES-256-GCM: ``0x01 ‖ nonce (12) ‖ ciphertext + tag``, the
  associated data naming the user, so a sealed secret copied to another user's row does
  not open. A database dump alone gives no usable second factor.
* the console's CSRF token is an HMAC of the session token (nothing to store).

Changing ``TELEMED_SECRET_KEY`` therefore makes every enrolled TOTP secret unreadable (the
same rule as for the signing keys): codes are then refused, an admin signs in with a
recovery code (hashed, not sealed) and resets their second factor, or has another admin
reset it, and enrols again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = b"\x01"
_NONCE = 12
_TOTP_INFO = b"telemed.admin.totp-secret.v1"
_CSRF_INFO = b"telemed.admin.csrf.v1"


class SealedSecretUnreadable(Exception):
    """A sealed secret did not open: another server secret, another user, or damaged bytes."""


def derive_key(server_secret: bytes, info: bytes) -> bytes:
    """A 256-bit key for one purpose, derived from the server secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(server_secret)


def _aad(user_id: str) -> bytes:
    return _TOTP_INFO + b"\x00" + user_id.encode("utf-8")


def seal_totp_secret(server_secret: bytes, *, user_id: str, secret: str) -> bytes:
    """Encrypt a base32 TOTP secret for storage, bound to its user."""
    nonce = secrets.token_bytes(_NONCE)
    aead = AESGCM(derive_key(server_secret, _TOTP_INFO))
    return FORMAT + nonce + aead.encrypt(nonce, secret.encode("ascii"), _aad(user_id))


def open_totp_secret(server_secret: bytes, *, user_id: str, sealed: bytes) -> str:
    """Decrypt a stored TOTP secret; raises SealedSecretUnreadable if it does not authenticate."""
    if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != FORMAT:
        raise SealedSecretUnreadable("unknown format")
    aead = AESGCM(derive_key(server_secret, _TOTP_INFO))
    try:
        plain = aead.decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], _aad(user_id))
    except InvalidTag:
        raise SealedSecretUnreadable("the sealed secret does not authenticate") from None
    return plain.decode("ascii")


def csrf_token(server_secret: bytes, session_token: str) -> str:
    """The CSRF token that goes with a session token (HMAC-SHA256, hex)."""
    key = derive_key(server_secret, _CSRF_INFO)
    return hmac.new(key, session_token.encode("ascii"), hashlib.sha256).hexdigest()


def csrf_matches(server_secret: bytes, session_token: str, presented: str) -> bool:
    """Whether ``presented`` is the CSRF token of this session (constant time)."""
    return hmac.compare_digest(csrf_token(server_secret, session_token), presented)
