"""Signed checkpoints: an Ed25519 signature over the Merkle tree head of the audit chain.

The signed message is the canonical JSON of every checkpoint field except ``signature``.
The signing key is dedicated to audit checkpoints and never signs anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, field_validator

from records.audit.chain import HASH_PATTERN, canonical_json, check_ts, utc_now_ts

__all__ = [
    "Checkpoint",
    "PublicKeys",
    "audit_key_id",
    "public_key_map",
    "sign_checkpoint",
    "verify_checkpoint_signature",
]

PublicKeys = Ed25519PublicKey | Sequence[Ed25519PublicKey] | Mapping[str, Ed25519PublicKey]
"""One audit public key, several (after rotation), or a mapping key_id -> key."""


class Checkpoint(BaseModel):
    """A signed statement: the first ``tree_size`` entries have this Merkle root."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    tree_size: int = Field(ge=0)
    root_hash: str = Field(pattern=HASH_PATTERN)
    last_entry_hash: str = Field(pattern=HASH_PATTERN)
    ts: str
    key_id: str = Field(min_length=1, max_length=100)
    signature: str

    @field_validator("ts")
    @classmethod
    def _ts(cls, value: str) -> str:
        return check_ts(value)

    @field_validator("signature")
    @classmethod
    def _signature(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("signature must be base64") from None
        if len(raw) != 64:
            raise ValueError("an Ed25519 signature is 64 bytes")
        return value

    def signed_message(self) -> bytes:
        """The exact bytes the signature covers."""
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))


def audit_key_id(public_key: Ed25519PublicKey) -> str:
    """Stable id of an audit key: ``ed25519:`` + first 16 bytes of SHA-256(raw key), hex."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def sign_checkpoint(
    *,
    tree_size: int,
    root_hash: str,
    last_entry_hash: str,
    private_key: Ed25519PrivateKey,
    ts: str | None = None,
) -> Checkpoint:
    """Sign the tree head of the first ``tree_size`` entries with the audit key."""
    unsigned = {
        "tree_size": tree_size,
        "root_hash": root_hash,
        "last_entry_hash": last_entry_hash,
        "ts": ts or utc_now_ts(),
        "key_id": audit_key_id(private_key.public_key()),
    }
    placeholder = base64.b64encode(bytes(64)).decode("ascii")
    draft = Checkpoint.model_validate({**unsigned, "signature": placeholder})
    signature = private_key.sign(draft.signed_message())
    return draft.model_copy(update={"signature": base64.b64encode(signature).decode("ascii")})


def public_key_map(keys: PublicKeys) -> dict[str, Ed25519PublicKey]:
    """Index audit public keys by key id."""
    if isinstance(keys, Ed25519PublicKey):
        return {audit_key_id(keys): keys}
    if isinstance(keys, Mapping):
        return dict(keys)
    return {audit_key_id(key): key for key in keys}


def verify_checkpoint_signature(checkpoint: Checkpoint, public_key: PublicKeys) -> bool:
    """True when ``checkpoint`` is signed by the key its ``key_id`` names among ``public_key``."""
    key = public_key_map(public_key).get(checkpoint.key_id)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(checkpoint.signature), checkpoint.signed_message())
    except InvalidSignature:
        return False
    return True
