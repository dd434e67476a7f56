"""Versioned key-encryption keys (KEKs) that wrap per-file data keys with AES-256-GCM."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from records.crypto._encoding import U32_MAX, fields, u32
from records.errors import IntegrityError, KeyConfigError, KeyUnavailable

__all__ = [
    "DATA_KEY_SIZE",
    "KEK_SIZE",
    "KekRing",
    "WrappedKey",
    "create_kek_file",
    "generate_data_key",
    "rewrap",
]

KEK_SIZE = 32
DATA_KEY_SIZE = 32
NONCE_SIZE = 12
_TAG_SIZE = 16
_WRAP_DOMAIN = b"telemed.records.dek-wrap.v1"
_WRAPPED_FORMAT = 1
_WRAPPED_HEADER = struct.Struct(">BI")
_KEK_FILE = re.compile(r"^kek-(\d{1,10})\.key$")

log = logging.getLogger(__name__)


def generate_data_key() -> bytes:
    """Return a fresh random 256-bit data key."""
    return secrets.token_bytes(DATA_KEY_SIZE)


@dataclass(frozen=True, repr=False)
class WrappedKey:
    """A data key encrypted under one KEK version; safe to store next to the document row."""

    kek_version: int
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.kek_version <= U32_MAX:
            raise ValueError("kek_version must be between 1 and 2**32-1")
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
        if len(self.ciphertext) != DATA_KEY_SIZE + _TAG_SIZE:
            raise ValueError(f"ciphertext must be {DATA_KEY_SIZE + _TAG_SIZE} bytes")

    def to_bytes(self) -> bytes:
        """Serialise as ``format(1) || kek_version(u32) || nonce(12) || ciphertext(48)``."""
        return _WRAPPED_HEADER.pack(_WRAPPED_FORMAT, self.kek_version) + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, raw: bytes) -> WrappedKey:
        """Parse the output of :meth:`to_bytes`; malformed input is an integrity error."""
        expected = _WRAPPED_HEADER.size + NONCE_SIZE + DATA_KEY_SIZE + _TAG_SIZE
        if len(raw) != expected:
            raise IntegrityError("Wrapped data key has the wrong length")
        fmt, version = _WRAPPED_HEADER.unpack_from(raw)
        if fmt != _WRAPPED_FORMAT:
            raise IntegrityError(f"Wrapped data key has unknown format {fmt}")
        body = raw[_WRAPPED_HEADER.size :]
        try:
            return cls(version, body[:NONCE_SIZE], body[NONCE_SIZE:])
        except ValueError as exc:
            raise IntegrityError("Wrapped data key is malformed") from exc

    def __repr__(self) -> str:
        return f"WrappedKey(kek_version={self.kek_version})"


def _wrap_aad(kek_version: int, aad: bytes) -> bytes:
    # The KEK version is bound too, so relabelling a wrapped key fails authentication.
    return fields(_WRAP_DOMAIN, u32(kek_version), aad)


class KekRing:
    """Key-encryption keys by version; one is active and wraps all new data keys.

    Key material lives only inside AESGCM objects and never appears in repr or errors.
    """

    __slots__ = ("_active", "_active_pinned", "_ciphers", "_lock", "_source", "_stamp")

    def __init__(self, keys: Mapping[int, bytes], *, active_version: int | None = None) -> None:
        if not keys:
            raise KeyConfigError("No key-encryption keys were provided")
        ciphers: dict[int, AESGCM] = {}
        for version, key in keys.items():
            if not 1 <= version <= U32_MAX:
                raise KeyConfigError(f"Key-encryption key version {version} is out of range")
            if len(key) != KEK_SIZE:
                raise KeyConfigError(f"Key-encryption key version {version} must be {KEK_SIZE} bytes")
            ciphers[version] = AESGCM(key)
        active = max(ciphers) if active_version is None else active_version
        if active not in ciphers:
            raise KeyUnavailable(kek_version=active)
        self._ciphers = ciphers
        self._active = active
        self._active_pinned = active_version is not None
        # A ring loaded from a directory follows it: `telemed keys rotate-kek` adds a file while
        # servers run, and they must unwrap (and wrap with) the new version without a restart.
        self._source: Path | None = None
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self._lock = threading.Lock()

    @classmethod
    def from_directory(
        cls, directory: str | os.PathLike[str], *, active_version: int | None = None
    ) -> KekRing:
        """Load ``kek-<version>.key`` files (32 raw bytes or base64), refusing loose permissions."""
        root = Path(directory)
        if not root.is_dir():
            raise KeyConfigError(f"Key directory {root} does not exist")
        keys: dict[int, bytes] = {}
        for path in sorted(root.iterdir()):
            if path.name.startswith(".") or not path.name.endswith(".key"):
                continue
            match = _KEK_FILE.match(path.name)
            if match is None:
                raise KeyConfigError(f"Key file name {path.name} is not kek-<version>.key")
            if os.name == "posix" and path.stat().st_mode & 0o077:
                mode = oct(path.stat().st_mode & 0o777)
                raise KeyConfigError(
                    f"Key file {path.name} is readable by group or others (mode {mode}); chmod 600 it"
                )
            keys[int(match.group(1))] = _decode_key(path.read_bytes(), label=path.name)
        if not keys:
            raise KeyConfigError(f"Key directory {root} holds no kek-<version>.key files")
        ring = cls(keys, active_version=active_version)
        ring._source = root
        ring._stamp = _directory_stamp(root)
        return ring

    def refresh(self) -> bool:
        """Reload from the key directory when its files changed; whether anything was reloaded.

        Called before every wrap and unwrap (a few ``stat`` calls). A directory that does not
        load (a file half written, loose permissions) keeps the keys already loaded, which still
        unwrap everything they wrapped, and is tried again on the next use.
        """
        if self._source is None:
            return False
        try:
            stamp = _directory_stamp(self._source)
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            try:
                fresh = KekRing.from_directory(
                    self._source, active_version=self._active if self._active_pinned else None
                )
            except KeyConfigError as exc:
                log.warning("key-encryption keys not reloaded, keeping versions %s: %s", self.versions, exc)
                return False
            self._ciphers, self._active, self._stamp = fresh._ciphers, fresh._active, stamp
        log.info("key-encryption keys reloaded: versions %s, active %s", self.versions, self._active)
        return True

    @classmethod
    def from_encoded(cls, spec: str, *, active_version: int | None = None) -> KekRing:
        """Load keys from a settings string ``"1:<base64>,2:<base64>"``."""
        keys: dict[int, bytes] = {}
        for index, item in enumerate(part.strip() for part in spec.split(",")):
            version_text, sep, encoded = item.partition(":")
            if not sep or not version_text.strip().isdigit():
                raise KeyConfigError(f"Key setting item {index + 1} is not <version>:<base64>")
            version = int(version_text)
            if version in keys:
                raise KeyConfigError(f"Key-encryption key version {version} is given twice")
            keys[version] = _decode_key(encoded.encode("ascii"), label=f"version {version}")
        return cls(keys, active_version=active_version)

    @property
    def active_version(self) -> int:
        """The version that wraps new data keys."""
        self.refresh()
        return self._active

    @property
    def versions(self) -> tuple[int, ...]:
        """All loaded versions, ascending."""
        return tuple(sorted(self._ciphers))

    def wrap(self, data_key: bytes, *, aad: bytes) -> WrappedKey:
        """Encrypt ``data_key`` under the active KEK, bound to ``aad``."""
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes")
        # Random 96-bit nonces are safe here: one wrap per stored file version keeps each
        # KEK far below the 2**32 invocations SP 800-38D allows with random nonces.
        nonce = secrets.token_bytes(NONCE_SIZE)
        self.refresh()
        version = self._active
        ciphertext = self._ciphers[version].encrypt(nonce, data_key, _wrap_aad(version, aad))
        return WrappedKey(kek_version=version, nonce=nonce, ciphertext=ciphertext)

    def unwrap(self, wrapped: WrappedKey, *, aad: bytes) -> bytes:
        """Decrypt a wrapped data key; wrong KEK, relabelled version or wrong ``aad`` all fail."""
        cipher = self._ciphers.get(wrapped.kek_version)
        if cipher is None and self.refresh():
            cipher = self._ciphers.get(wrapped.kek_version)
        if cipher is None:
            raise KeyUnavailable(kek_version=wrapped.kek_version)
        try:
            return cipher.decrypt(wrapped.nonce, wrapped.ciphertext, _wrap_aad(wrapped.kek_version, aad))
        except InvalidTag:
            raise IntegrityError(
                f"Wrapped data key failed authentication under key-encryption key version "
                f"{wrapped.kek_version}"
            ) from None

    def __repr__(self) -> str:
        return f"KekRing(versions={list(self.versions)}, active_version={self._active})"


def rewrap(wrapped: WrappedKey, *, ring: KekRing, aad: bytes) -> WrappedKey:
    """Re-encrypt a data key under the ring's active KEK; a key already there is returned as is."""
    if wrapped.kek_version == ring.active_version:
        return wrapped
    return ring.wrap(ring.unwrap(wrapped, aad=aad), aad=aad)


def create_kek_file(directory: str | os.PathLike[str], *, version: int | None = None) -> int:
    """Write a new random KEK as ``kek-<version>.key`` (mode 600); return its version."""
    root = Path(directory)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = [int(m.group(1)) for p in root.iterdir() if (m := _KEK_FILE.match(p.name))]
    new_version = version if version is not None else max(existing, default=0) + 1
    if not 1 <= new_version <= U32_MAX:
        raise KeyConfigError(f"Key-encryption key version {new_version} is out of range")
    target = root / f"kek-{new_version}.key"
    encoded = base64.b64encode(secrets.token_bytes(KEK_SIZE)) + b"\n"
    # O_EXCL: never overwrite a KEK, that would make every key it wrapped unrecoverable.
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyConfigError(f"Key file {target.name} already exists") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(encoded)
        handle.flush()
        os.fsync(handle.fileno())
    return new_version


def _directory_stamp(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of each key file: changes when a KEK is added or replaced."""
    stamp = []
    for entry in os.scandir(root):
        if entry.name.endswith(".key") and not entry.name.startswith("."):
            info = entry.stat()
            stamp.append((entry.name, info.st_size, info.st_mtime_ns))
    return tuple(sorted(stamp))


def _decode_key(raw: bytes, *, label: str) -> bytes:
    if len(raw) == KEK_SIZE:
        return raw
    text = raw.strip()
    try:
        altchars = b"-_" if b"-" in text or b"_" in text else None
        key = base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"Key {label} is neither 32 raw bytes nor base64") from None
    if len(key) != KEK_SIZE:
        raise KeyConfigError(f"Key {label} does not decode to {KEK_SIZE} bytes")
    return key
