"""Device keys: Ed25519 generation, the base64url public form, the JWK thumbprint, key files.

The public key travels as its raw 32 bytes in unpadded base64url (the JWK ``x`` value).
``key_thumbprint`` is the RFC 7638 thumbprint of the OKP JWK (RFC 8037) — the ``cnf.jkt``
that binds posture tokens to the device key. Private key files are PKCS#8 PEM, created
with mode 0600 and refused on load if group or others can read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from device_policy.canonical import canonical_json
from device_policy.errors import InsecureKeyFile, KeyMaterialError

_RAW_KEY_BYTES = 32


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), as JOSE uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly: padding or characters outside the alphabet refused."""
    if not isinstance(text, str) or "=" in text or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.b64decode(
            text.translate(str.maketrans("-_", "+/")) + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url") from None
    if b64url_encode(data) != text:  # non-zero trailing bits: a second spelling of the same bytes
        raise ValueError("not canonical base64url")
    return data


def generate_device_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 device key."""
    return Ed25519PrivateKey.generate()


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """The raw public key as unpadded base64url (43 characters)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64url_encode(raw)


def load_public_key_b64(text: str) -> Ed25519PublicKey:
    """Parse a public key written by ``public_key_b64``; KeyMaterialError if it is not one."""
    try:
        raw = b64url_decode(text)
    except ValueError:
        raise KeyMaterialError("The public key is not unpadded base64url") from None
    if len(raw) != _RAW_KEY_BYTES:
        raise KeyMaterialError(f"An Ed25519 public key has 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as an RFC 8037 OKP JWK with only the required members."""
    return {"crv": "Ed25519", "kty": "OKP", "x": public_key_b64(public_key)}


def load_public_jwk(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """Parse an OKP Ed25519 JWK; KeyMaterialError for any other key type or extra member."""
    if not isinstance(jwk, Mapping) or set(jwk) != {"crv", "kty", "x"}:
        raise KeyMaterialError("The JWK must have exactly crv, kty and x")
    if jwk["kty"] != "OKP" or jwk["crv"] != "Ed25519":
        raise KeyMaterialError("The JWK is not an OKP Ed25519 key")
    return load_public_key_b64(jwk["x"])


def key_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK SHA-256 thumbprint of the key, unpadded base64url (``cnf.jkt``)."""
    # RFC 7638 canonical form = required members, sorted, no whitespace = our canonical JSON.
    return b64url_encode(hashlib.sha256(canonical_json(public_jwk(public_key))).digest())


def save_private_key(
    path: str | os.PathLike[str], private_key: Ed25519PrivateKey, *, overwrite: bool = False
) -> Path:
    """Write the key as PKCS#8 PEM with mode 0600 (atomically; refuses to replace unless told)."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # mkstemp creates the file 0600 before any byte is written, so the key is never exposed.
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o600)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read a key written by ``save_private_key``; InsecureKeyFile if others may read it."""
    target = Path(path)
    if os.name == "posix":
        mode = target.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFile(
                f"Key file {target} has mode {stat.S_IMODE(mode):o}; it must be 600 or stricter"
            )
    try:
        key = serialization.load_pem_private_key(target.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"Key file {target} does not hold an unencrypted PEM key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMaterialError(f"Key file {target} holds a {type(key).__name__}, not Ed25519")
    return key
