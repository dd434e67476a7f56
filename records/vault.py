"""The key material and blob store the records services encrypt with, loaded once.

The caller (the server) decides *whether* keys may be created: in development, or on the
first start of an empty database. Otherwise a missing key directory or key file is an
error, so a server whose key volume is not mounted refuses to start instead of quietly
encrypting new files under fresh keys that nobody backed up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from records.audit.keyring import AuditKeyRing
from records.audit.signing import create_audit_key, load_audit_key
from records.crypto import BlobStore, FileSystemBlobStore, KekRing, create_kek_file
from records.errors import KeyConfigError

__all__ = ["Vault", "build_vault", "load_audit_key_ring", "load_kek_ring", "load_or_create_audit_key"]


@dataclass(frozen=True)
class Vault:
    """What encrypting and signing need: the KEK ring, the blob store and the audit keys."""

    ring: KekRing
    store: BlobStore
    audit_keys: AuditKeyRing

    def __repr__(self) -> str:
        return f"Vault(ring={self.ring!r}, store={self.store!r})"

    @property
    def audit_key(self) -> Ed25519PrivateKey:
        """The current audit signing key, re-read when the key file changed (after a rotation)."""
        return self.audit_keys.signer()

    def audit_public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every audit public key (retired ones too) by key id, for verifying checkpoints."""
        return self.audit_keys.public_keys()


def load_kek_ring(directory: str | os.PathLike[str], *, create: bool) -> KekRing:
    """Load ``kek-<n>.key`` files; with ``create``, write a first KEK into an empty directory."""
    root = Path(directory)
    has_keys = root.is_dir() and any(p.name.endswith(".key") for p in root.iterdir())
    if not has_keys:
        if not create:
            raise KeyConfigError(
                f"Key-encryption key directory {root} holds no keys; records will not start "
                "without the keys their files were encrypted with"
            )
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        create_kek_file(root)
    return KekRing.from_directory(root)


def load_or_create_audit_key(path: str | os.PathLike[str], *, create: bool) -> Ed25519PrivateKey:
    """Load the audit checkpoint key; with ``create``, generate it when the file is absent."""
    target = Path(path)
    if not target.exists() and create:
        return create_audit_key(target)
    return load_audit_key(target)


def load_audit_key_ring(path: str | os.PathLike[str], *, create: bool) -> AuditKeyRing:
    """The audit key ring over ``path``, loaded now (fail closed); ``create`` as for the key."""
    load_or_create_audit_key(path, create=create)
    keys = AuditKeyRing(path)
    keys.signer()
    return keys


def build_vault(*, kek_dir: Path, blob_dir: Path, audit_key_file: Path, create_keys: bool) -> Vault:
    """Load (or, when allowed, create) the keys and open the blob store."""
    return Vault(
        ring=load_kek_ring(kek_dir, create=create_keys),
        store=FileSystemBlobStore(blob_dir),
        audit_keys=load_audit_key_ring(audit_key_file, create=create_keys),
    )
