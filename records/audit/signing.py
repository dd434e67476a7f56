"""The dedicated Ed25519 audit checkpoint key: create, load, and publish its public half.

The private key is a PKCS#8 PEM file (mode 600, created with O_EXCL so an existing key is
never overwritten); it signs audit checkpoints and nothing else. The public key is
published as SubjectPublicKeyInfo PEM: pin it out of band, and give it to
``telemed audit verify --public-key``. A public-key file may hold several PEM blocks
(keys from before a rotation).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from records.audit.checkpoint import audit_key_id
from records.errors import KeyConfigError

__all__ = [
    "audit_key_id",
    "create_audit_key",
    "load_audit_key",
    "load_public_keys",
    "public_key_pem",
]

_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def create_audit_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Generate a new audit key at ``path`` (mode 600); refuses to overwrite an existing file."""
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyConfigError(f"Audit key file {target.name} already exists") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def load_audit_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the audit private key, refusing a missing, loose-permission or non-Ed25519 file."""
    source = Path(path)
    if not source.is_file():
        raise KeyConfigError(f"Audit key file {source} does not exist")
    if os.name == "posix" and source.stat().st_mode & 0o077:
        mode = oct(source.stat().st_mode & 0o777)
        raise KeyConfigError(
            f"Audit key file {source.name} is readable by others (mode {mode}); chmod 600 it"
        )
    try:
        key = load_pem_private_key(source.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise KeyConfigError(f"Audit key file {source.name} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyConfigError(f"Audit key file {source.name} does not hold an Ed25519 key")
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public half as SubjectPublicKeyInfo PEM text."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_public_keys(data: bytes) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key in a PEM file (one or more ``PUBLIC KEY`` blocks)."""
    keys: list[Ed25519PublicKey] = []
    for block in _PEM_BLOCK.findall(data):
        try:
            key = load_pem_public_key(block)
        except ValueError:
            raise KeyConfigError("A PUBLIC KEY block in the key file does not parse") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyConfigError("The key file holds a public key that is not Ed25519")
        keys.append(key)
    if not keys:
        raise KeyConfigError("The key file holds no PEM public key")
    return keys
