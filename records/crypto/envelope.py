"""Envelope encryption of patient files: a fresh data key per file, wrapped by the KEK ring.

``seal`` / ``FileSealer`` encrypt into a :class:`BlobStore`; ``unseal`` streams verified
plaintext back. ``aseal`` / ``aunseal`` do the same from async code, running the blocking
file I/O in worker threads so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterable, AsyncIterator, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Self

from records.crypto.blobstore import BlobStore, BlobWriter
from records.crypto.context import FileContext
from records.crypto.keyring import KekRing, WrappedKey, generate_data_key
from records.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    TAG_SIZE,
    DecryptResult,
    Source,
    StreamDecryptor,
    StreamEncryptor,
    Writable,
    iter_source,
)
from records.errors import IntegrityError

__all__ = [
    "FileSealer",
    "PlaintextStream",
    "SealedFile",
    "aseal",
    "aunseal",
    "seal",
    "unseal",
    "unseal_to",
]

_READ_SIZE = DEFAULT_CHUNK_SIZE + TAG_SIZE


@dataclass(frozen=True)
class SealedFile:
    """Everything the document row must keep to read the file back."""

    blob_id: str
    wrapped_key: WrappedKey
    size: int
    sha256: str
    ciphertext_size: int


class FileSealer:
    """Push-style sealing: ``write`` plaintext pieces, then ``finish``; ``abort`` leaves nothing."""

    def __init__(
        self,
        *,
        store: BlobStore,
        ring: KekRing,
        context: FileContext,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        data_key = generate_data_key()
        self._wrapped = ring.wrap(data_key, aad=context.key_aad())
        self._encryptor = StreamEncryptor(data_key, context, chunk_size=chunk_size)
        self._writer: BlobWriter = store.create()
        self._state = "open"

    def write(self, data: bytes) -> None:
        """Encrypt ``data`` and append the ciphertext to the blob."""
        if self._state != "open":
            raise RuntimeError(f'Cannot write to a sealer in state "{self._state}"')
        try:
            if sealed := self._encryptor.update(data):
                self._writer.write(sealed)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> SealedFile:
        """Write the final chunk, commit the blob atomically and describe it."""
        if self._state != "open":
            raise RuntimeError(f'Cannot finish a sealer in state "{self._state}"')
        try:
            self._writer.write(self._encryptor.finalize())
            self._writer.commit()
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        result = self._encryptor.result()
        return SealedFile(
            blob_id=self._writer.blob_id,
            wrapped_key=self._wrapped,
            size=result.size,
            sha256=result.sha256,
            ciphertext_size=result.ciphertext_size,
        )

    def abort(self) -> None:
        """Discard the partial blob."""
        if self._state == "open":
            self._state = "aborted"
            self._writer.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or self._state == "open":
            self.abort()


def seal(
    source: Source,
    *,
    store: BlobStore,
    ring: KekRing,
    context: FileContext,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SealedFile:
    """Encrypt a blocking stream or iterable of bytes into ``store``; return what to persist."""
    with FileSealer(store=store, ring=ring, context=context, chunk_size=chunk_size) as sealer:
        for piece in iter_source(source, chunk_size):
            sealer.write(piece)
        return sealer.finish()


def _open_verified(
    *, store: BlobStore, ring: KekRing, blob_id: str, wrapped_key: WrappedKey, context: FileContext
) -> tuple[BinaryIO, StreamDecryptor]:
    data_key = ring.unwrap(wrapped_key, aad=context.key_aad())
    return store.open(blob_id), StreamDecryptor(data_key, context)


def _check_digest(result: DecryptResult, expected_sha256: str | None) -> None:
    if expected_sha256 is not None and not hmac.compare_digest(result.sha256, expected_sha256.lower()):
        raise IntegrityError("Decrypted file does not match its recorded SHA-256")


def unseal(
    *,
    store: BlobStore,
    ring: KekRing,
    blob_id: str,
    wrapped_key: WrappedKey,
    context: FileContext,
    expected_sha256: str | None = None,
) -> PlaintextStream:
    """Unwrap the key and open the blob now, then yield verified plaintext chunks lazily.

    Missing blobs and wrong keys raise before the first chunk, so a server can still answer
    with an error status; tampering found mid-stream raises IntegrityError from the iterator.
    """
    handle, decryptor = _open_verified(
        store=store, ring=ring, blob_id=blob_id, wrapped_key=wrapped_key, context=context
    )
    return PlaintextStream(handle, decryptor, expected_sha256)


class PlaintextStream:
    """Iterator over the verified plaintext chunks of one stored file; ``close`` frees the blob."""

    def __init__(self, handle: BinaryIO, decryptor: StreamDecryptor, expected_sha256: str | None) -> None:
        self._handle = handle
        self._chunks = _drain(handle, decryptor, expected_sha256)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """Stop early and release the blob handle."""
        self._chunks.close()
        self._handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _drain(
    handle: BinaryIO, decryptor: StreamDecryptor, expected_sha256: str | None
) -> Generator[bytes, None, None]:
    with handle:
        while piece := handle.read(_READ_SIZE):
            yield from decryptor.chunks(piece)
        last = decryptor.finalize()
        # The digest is checked before the last chunk leaves, so a mismatch withholds it.
        _check_digest(decryptor.result(), expected_sha256)
        if last:
            yield last


def unseal_to(
    out: Writable,
    *,
    store: BlobStore,
    ring: KekRing,
    blob_id: str,
    wrapped_key: WrappedKey,
    context: FileContext,
    expected_sha256: str | None = None,
) -> DecryptResult:
    """Decrypt a stored file into ``out``; returns plaintext size and SHA-256."""
    handle, decryptor = _open_verified(
        store=store, ring=ring, blob_id=blob_id, wrapped_key=wrapped_key, context=context
    )
    with PlaintextStream(handle, decryptor, expected_sha256) as chunks:
        for plaintext in chunks:
            out.write(plaintext)
    return decryptor.result()


async def aseal(
    source: AsyncIterable[bytes],
    *,
    store: BlobStore,
    ring: KekRing,
    context: FileContext,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SealedFile:
    """Seal an async byte stream (e.g. a request body) without blocking the event loop."""
    sealer = await asyncio.to_thread(
        FileSealer, store=store, ring=ring, context=context, chunk_size=chunk_size
    )
    try:
        async for piece in source:
            await asyncio.to_thread(sealer.write, piece)
        return await asyncio.to_thread(sealer.finish)
    finally:
        sealer.abort()


async def aunseal(
    *,
    store: BlobStore,
    ring: KekRing,
    blob_id: str,
    wrapped_key: WrappedKey,
    context: FileContext,
    expected_sha256: str | None = None,
) -> AsyncIterator[bytes]:
    """Like :func:`unseal`, for async code: opening and each chunk run in a worker thread."""
    chunks = await asyncio.to_thread(
        unseal,
        store=store,
        ring=ring,
        blob_id=blob_id,
        wrapped_key=wrapped_key,
        context=context,
        expected_sha256=expected_sha256,
    )
    return _aiterate(chunks)


async def _aiterate(chunks: PlaintextStream) -> AsyncIterator[bytes]:
    try:
        # Chunks are never empty bytes, so None can only mean the stream is exhausted.
        while (item := await asyncio.to_thread(next, chunks, None)) is not None:
            yield item
    finally:
        chunks.close()
