"""Chunked AES-256-GCM streaming encryption (the STREAM construction), sans-IO core.

Blob layout::

    header  = magic "TMRE" | format 0x01 | chunk_size u32 | nonce_prefix (7 random bytes)
    chunk i = AES-256-GCM(data_key, nonce_i, plaintext_i, aad_i)     (ciphertext || 16-byte tag)

    nonce_i = nonce_prefix || u32(i) || final_flag
    aad_i   = FileContext.chunk_aad_prefix() || header || u32(i) || final_flag

Every chunk except the last carries exactly ``chunk_size`` plaintext bytes; the last carries
0..chunk_size bytes and ``final_flag = 1``. Reordering, dropping, truncating or appending
chunks, or moving the blob to another file/patient/version, fails authentication.

:class:`StreamEncryptor` and :class:`StreamDecryptor` do no I/O (``update``/``finalize``),
so async code can drive them directly; the helpers below drive them from blocking streams.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from records.crypto._encoding import U32_MAX, u32
from records.crypto.context import FileContext
from records.crypto.keyring import DATA_KEY_SIZE
from records.errors import IntegrityError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "HEADER_SIZE",
    "DecryptResult",
    "EncryptResult",
    "Readable",
    "Source",
    "StreamDecryptor",
    "StreamEncryptor",
    "Writable",
    "decrypt_stream",
    "encrypt_stream",
    "iter_decrypt",
    "iter_source",
]

DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
_MAGIC = b"TMRE"
_FORMAT = 1
_HEADER = struct.Struct(">4sBI7s")
HEADER_SIZE = _HEADER.size


@runtime_checkable
class Readable(Protocol):
    """Anything with a blocking ``read(size)`` returning bytes (b"" at end)."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    """Anything with a blocking ``write(bytes)``."""

    def write(self, data: bytes, /) -> object: ...


Source = Readable | bytes | Iterable[bytes]
"""Plaintext or ciphertext input: a blocking readable, one bytes object, or an iterable of bytes."""


@dataclass(frozen=True)
class EncryptResult:
    """What encrypting a stream produced: plaintext size and SHA-256, ciphertext size."""

    size: int
    sha256: str
    ciphertext_size: int


@dataclass(frozen=True)
class DecryptResult:
    """What decrypting a stream produced: plaintext size and SHA-256."""

    size: int
    sha256: str


def _check_key(data_key: bytes) -> AESGCM:
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes")
    return AESGCM(data_key)


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    # Unique per (data key, chunk): the counter never repeats within a file and the final
    # flag separates the last chunk. The random prefix only matters if a data key were
    # ever reused for a second stream, which the envelope layer never does.
    return prefix + u32(index) + (b"\x01" if final else b"\x00")


class StreamEncryptor:
    """Encrypts a plaintext stream chunk by chunk; feed ``update`` then call ``finalize`` once."""

    def __init__(
        self, data_key: bytes, context: FileContext, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}")
        self._aead = _check_key(data_key)
        self._chunk_size = chunk_size
        self._prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
        self._header = _HEADER.pack(_MAGIC, _FORMAT, chunk_size, self._prefix)
        self._aad_prefix = context.chunk_aad_prefix() + self._header
        self._pending = bytearray()
        self._index = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._out_size = 0
        self._header_sent = False
        self._state = "open"

    def update(self, data: bytes) -> bytes:
        """Absorb plaintext; return ciphertext ready to write (possibly empty)."""
        if self._state != "open":
            raise RuntimeError(f'Cannot update encryptor in state "{self._state}"')
        out = self._take_header()
        self._hash.update(data)
        self._size += len(data)
        view = memoryview(data)
        while view:
            if len(self._pending) == self._chunk_size:
                # More plaintext follows, so the held chunk is not the last one.
                out.append(self._seal(bytes(self._pending), final=False))
                self._pending.clear()
            take = self._chunk_size - len(self._pending)
            self._pending += view[:take]
            view = view[take:]
        return self._emit(out)

    def finalize(self) -> bytes:
        """Seal the final chunk (flagged last) and return the remaining ciphertext."""
        if self._state != "open":
            raise RuntimeError(f'Cannot finalize encryptor in state "{self._state}"')
        out = self._take_header()
        out.append(self._seal(bytes(self._pending), final=True))
        self._pending.clear()
        self._state = "finalized"
        return self._emit(out)

    def result(self) -> EncryptResult:
        """Plaintext size and SHA-256 and ciphertext size; only after ``finalize``."""
        if self._state != "finalized":
            raise RuntimeError(f'Cannot read the result of an encryptor in state "{self._state}"')
        return EncryptResult(size=self._size, sha256=self._hash.hexdigest(), ciphertext_size=self._out_size)

    def _take_header(self) -> list[bytes]:
        if self._header_sent:
            return []
        self._header_sent = True
        return [self._header]

    def _seal(self, plaintext: bytes, *, final: bool) -> bytes:
        if self._index > U32_MAX:
            raise ValueError("stream too long for a 32-bit chunk counter")
        flag = b"\x01" if final else b"\x00"
        aad = self._aad_prefix + u32(self._index) + flag
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, final), plaintext, aad)
        self._index += 1
        return sealed

    def _emit(self, parts: list[bytes]) -> bytes:
        joined = b"".join(parts)
        self._out_size += len(joined)
        return joined


class StreamDecryptor:
    """Decrypts and verifies a blob; only authenticated chunks are ever returned.

    ``update`` returns plaintext of chunks that verified; ``finalize`` verifies the last
    chunk and raises :class:`IntegrityError` if the stream was truncated.
    """

    def __init__(self, data_key: bytes, context: FileContext) -> None:
        self._aead = _check_key(data_key)
        self._context = context
        self._buffer = bytearray()
        self._record_size = 0
        self._prefix = b""
        self._aad_prefix = b""
        self._index = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._state = "header"

    def update(self, data: bytes) -> bytes:
        """Absorb ciphertext; return the plaintext of every chunk now known to be non-final."""
        return b"".join(self.chunks(data))

    def chunks(self, data: bytes) -> Iterator[bytes]:
        """Absorb ciphertext; yield each non-final chunk's plaintext as soon as it verifies."""
        if self._state in ("finalized", "failed"):
            raise RuntimeError(f'Cannot update decryptor in state "{self._state}"')
        self._buffer += data
        return self._verified_chunks()

    def _verified_chunks(self) -> Iterator[bytes]:
        if self._state == "header":
            if len(self._buffer) < HEADER_SIZE:
                return
            self._read_header()
        buffer, size = self._buffer, self._record_size
        # Strictly greater: a full record is only known to be non-final once a byte follows.
        while len(buffer) > size:
            record = bytes(buffer[:size])
            del buffer[:size]  # cheap: CPython bytearrays drop a prefix without copying
            yield self._open(record, final=False)

    def finalize(self) -> bytes:
        """Verify and return the final chunk; a missing or short final chunk is an error."""
        if self._state in ("finalized", "failed"):
            raise RuntimeError(f'Cannot finalize decryptor in state "{self._state}"')
        # Chunks a caller left unread from chunks() come first; they are known non-final.
        earlier = b"".join(self._verified_chunks())
        if self._state == "header" or len(self._buffer) < TAG_SIZE:
            self._state = "failed"
            raise IntegrityError(f"Encrypted file is truncated before chunk {self._index}")
        plaintext = self._open(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._state = "finalized"
        return earlier + plaintext

    def result(self) -> DecryptResult:
        """Plaintext size and SHA-256; only after ``finalize``."""
        if self._state != "finalized":
            raise RuntimeError(f'Cannot read the result of a decryptor in state "{self._state}"')
        return DecryptResult(size=self._size, sha256=self._hash.hexdigest())

    def _read_header(self) -> None:
        header = bytes(self._buffer[:HEADER_SIZE])
        del self._buffer[:HEADER_SIZE]
        magic, fmt, chunk_size, prefix = _HEADER.unpack(header)
        if magic != _MAGIC or fmt != _FORMAT:
            self._state = "failed"
            raise IntegrityError("Stored file is not an encrypted records blob of a known format")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            self._state = "failed"
            raise IntegrityError("Encrypted file header names an impossible chunk size")
        self._record_size = chunk_size + TAG_SIZE
        self._prefix = prefix
        self._aad_prefix = self._context.chunk_aad_prefix() + header
        self._state = "chunks"

    def _open(self, record: bytes, *, final: bool) -> bytes:
        if self._index > U32_MAX:
            self._state = "failed"
            raise IntegrityError("Encrypted file has more chunks than the format allows")
        flag = b"\x01" if final else b"\x00"
        aad = self._aad_prefix + u32(self._index) + flag
        try:
            plaintext = self._aead.decrypt(_nonce(self._prefix, self._index, final), record, aad)
        except InvalidTag:
            self._state = "failed"
            raise IntegrityError(
                f"Chunk {self._index} failed authentication: the file was altered, truncated "
                "or reordered, or belongs to another file, patient or version"
            ) from None
        self._index += 1
        self._hash.update(plaintext)
        self._size += len(plaintext)
        return plaintext


def iter_source(source: Source, size: int) -> Iterator[bytes]:
    """Yield pieces from a blocking readable (``size`` at a time) or an iterable of bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        # A bare bytes object is one piece, not an iterable of ints.
        if source:
            yield bytes(source)
        return
    if isinstance(source, Readable):
        while piece := source.read(size):
            yield piece
        return
    for piece in source:
        if piece:
            yield bytes(piece)


def encrypt_stream(
    source: Source,
    out: Writable,
    *,
    data_key: bytes,
    context: FileContext,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptResult:
    """Encrypt ``source`` into ``out`` chunk by chunk, never holding the whole file."""
    encryptor = StreamEncryptor(data_key, context, chunk_size=chunk_size)
    for piece in iter_source(source, chunk_size):
        if sealed := encryptor.update(piece):
            out.write(sealed)
    out.write(encryptor.finalize())
    return encryptor.result()


def iter_decrypt(
    source: Source,
    *,
    data_key: bytes,
    context: FileContext,
    read_size: int = DEFAULT_CHUNK_SIZE + TAG_SIZE,
) -> Iterator[bytes]:
    """Yield verified plaintext chunks of ``source``; raises IntegrityError at the first bad one."""
    decryptor = StreamDecryptor(data_key, context)
    for piece in iter_source(source, read_size):
        yield from decryptor.chunks(piece)
    if plaintext := decryptor.finalize():
        yield plaintext


def decrypt_stream(
    source: Source,
    out: Writable,
    *,
    data_key: bytes,
    context: FileContext,
    read_size: int = DEFAULT_CHUNK_SIZE + TAG_SIZE,
) -> DecryptResult:
    """Decrypt ``source`` into ``out``; only verified chunks are written."""
    decryptor = StreamDecryptor(data_key, context)
    for piece in iter_source(source, read_size):
        for plaintext in decryptor.chunks(piece):
            out.write(plaintext)
    out.write(decryptor.finalize())
    return decryptor.result()
