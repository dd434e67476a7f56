"""The audit key ring: the current checkpoint signing key, every public key ever used, rotation.

Files (the private key path is the server's ``TELEMED_AUDIT_KEY_FILE``)::

    audit-ed25519.pem          the current private key (PKCS#8 PEM, mode 600): signs new checkpoints
    audit-ed25519-public.pem   every audit public key, oldest first, the current one last

:func:`rotate_audit_key` writes a new private key over the key file (the retired private key
is gone, so it can sign nothing more) after appending the new public key to the public-key
file; the retired public keys stay there for ever, so their checkpoints keep verifying.
:class:`AuditKeyRing` re-reads both files whenever they change on disk, so a running server
signs with the new key from its next checkpoint, without a restart.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from records.audit.checkpoint import audit_key_id
from records.audit.signing import load_audit_key, load_public_keys, public_key_pem

__all__ = ["AuditKeyRing", "RotatedKey", "public_keys_path", "read_public_keys", "rotate_audit_key"]

_Stamp = tuple[int, int, int, int] | None


def public_keys_path(key_file: str | os.PathLike[str]) -> Path:
    """The public-key file that goes with ``key_file``: ``<stem>-public.pem`` beside it."""
    path = Path(key_file)
    return path.with_name(f"{path.stem}-public.pem")


def _stamp(path: Path) -> _Stamp:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode)


def read_public_keys(key_file: str | os.PathLike[str], current: Ed25519PrivateKey) -> list[Ed25519PublicKey]:
    """Every audit public key, oldest first: the public-key file's, then ``current``'s if not in it."""
    path = public_keys_path(key_file)
    keys = load_public_keys(path.read_bytes()) if path.exists() else []
    ids = [audit_key_id(key) for key in keys]
    if audit_key_id(current.public_key()) not in ids:
        # A key from before rotation existed has no public-key file yet.
        keys.append(current.public_key())
    return keys


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a file that must not exist yet, durably, with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RotatedKey:
    """What a rotation did: the retired and new key ids and where the files are."""

    old_key_id: str
    new_key_id: str
    key_file: Path
    public_keys_file: Path
    key_ids: tuple[str, ...]
    """Every audit key id in the public-key file, oldest first (the new one last)."""


def rotate_audit_key(key_file: str | os.PathLike[str]) -> RotatedKey:
    """Replace the audit private key with a new one; keep every public key for verifiers."""
    target = Path(key_file)
    old = load_audit_key(target)  # refuse to rotate away from a key that does not load
    keys = read_public_keys(target, old)
    new = Ed25519PrivateKey.generate()
    keys.append(new.public_key())
    ring_file = public_keys_path(target)
    token = secrets.token_hex(8)
    staged_key = target.with_name(f".{target.name}.{token}.new")
    staged_ring = ring_file.with_name(f".{ring_file.name}.{token}.new")
    try:
        _write_new(staged_key, new.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()), 0o600)
        _write_new(staged_ring, "".join(public_key_pem(k) for k in keys).encode("ascii"), 0o644)
        # The public key is published before anything can be signed with the new private key,
        # and the old private key is replaced, never kept beside the new one.
        os.replace(staged_ring, ring_file)
        os.replace(staged_key, target)
        _fsync_dir(target.parent)
    finally:
        for leftover in (staged_key, staged_ring):
            leftover.unlink(missing_ok=True)
    return RotatedKey(
        old_key_id=audit_key_id(old.public_key()),
        new_key_id=audit_key_id(new.public_key()),
        key_file=target,
        public_keys_file=ring_file,
        key_ids=tuple(audit_key_id(k) for k in keys),
    )


class AuditKeyRing:
    """The audit keys of a running process, re-read whenever the key files change on disk.

    ``signer()`` never falls back to a key that was rotated out: when the key file changed and
    does not load, it raises :class:`KeyConfigError` (and tries again on the next call).
    """

    def __init__(
        self,
        key_file: str | os.PathLike[str],
        *,
        loader: Callable[[Path], Ed25519PrivateKey] = load_audit_key,
    ) -> None:
        self._key_file = Path(key_file)
        self._ring_file = public_keys_path(self._key_file)
        self._loader = loader
        self._lock = threading.Lock()
        self._stamps: tuple[_Stamp, _Stamp] | None = None
        self._signer: Ed25519PrivateKey | None = None
        self._public: list[Ed25519PublicKey] = []

    @property
    def key_file(self) -> Path:
        """The private key file."""
        return self._key_file

    @property
    def public_keys_file(self) -> Path:
        """The file holding every audit public key."""
        return self._ring_file

    def _current(self) -> tuple[Ed25519PrivateKey, list[Ed25519PublicKey]]:
        with self._lock:
            # Stamped before reading: a change while reading shows up as another change next time.
            stamps = (_stamp(self._key_file), _stamp(self._ring_file))
            if self._signer is None or stamps != self._stamps:
                signer = self._loader(self._key_file)
                public = read_public_keys(self._key_file, signer)
                self._signer, self._public, self._stamps = signer, public, stamps
            return self._signer, list(self._public)

    def signer(self) -> Ed25519PrivateKey:
        """The key new checkpoints are signed with (the key file as it is now)."""
        return self._current()[0]

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every audit public key by key id, oldest first, the current one included."""
        return {audit_key_id(key): key for key in self._current()[1]}

    def snapshot(self) -> tuple[str, dict[str, Ed25519PublicKey]]:
        """The current key id and every public key by id, read together."""
        signer, public = self._current()
        return audit_key_id(signer.public_key()), {audit_key_id(key): key for key in public}
