"""Sealing files into the filesystem blob store and reading them back."""

from __future__ import annotations

import io
import os
import secrets
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from records.crypto import (
    FileContext,
    FileSealer,
    FileSystemBlobStore,
    KekRing,
    SealedFile,
    aseal,
    aunseal,
    seal,
    unseal,
    unseal_to,
)
from records.errors import IntegrityError, NotFoundOrDenied

MARKER = b"MARKER-Jane-Doe-A1234BC-diagnosis"
CTX = FileContext(file_id="doc-7", patient_id="A1234BC", version=3)


@pytest.fixture
def ring() -> KekRing:
    return KekRing({1: secrets.token_bytes(32)})


@pytest.fixture
def store(tmp_path: Path) -> FileSystemBlobStore:
    return FileSystemBlobStore(tmp_path / "blobs")


def read_back(store: FileSystemBlobStore, ring: KekRing, sealed: SealedFile) -> bytes:
    with unseal(
        store=store,
        ring=ring,
        blob_id=sealed.blob_id,
        wrapped_key=sealed.wrapped_key,
        context=CTX,
        expected_sha256=sealed.sha256,
    ) as chunks:
        return b"".join(chunks)


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 200_001], ids=str)
def test_seal_and_unseal_round_trip(size: int, store: FileSystemBlobStore, ring: KekRing) -> None:
    plaintext = os.urandom(size)

    sealed = seal(io.BytesIO(plaintext), store=store, ring=ring, context=CTX)

    assert sealed.size == size
    assert read_back(store, ring, sealed) == plaintext
    out = io.BytesIO()
    result = unseal_to(
        out, store=store, ring=ring, blob_id=sealed.blob_id,
        wrapped_key=sealed.wrapped_key, context=CTX,
    )  # fmt: skip
    assert out.getvalue() == plaintext
    assert result.sha256 == sealed.sha256


def test_no_plaintext_on_disk(tmp_path: Path, ring: KekRing) -> None:
    store = FileSystemBlobStore(tmp_path)
    small = seal(MARKER, store=store, ring=ring, context=CTX)
    big = seal((MARKER * 5000 for _ in range(20)), store=store, ring=ring, context=CTX)

    files = all_files(tmp_path)
    assert len(files) == 2
    for path in files:
        content = path.read_bytes()
        assert MARKER not in content
        assert MARKER[:12] not in content
        assert b"A1234BC" not in content and b"doc-7" not in content
        # Names are random ids, never patient or document data.
        assert "A1234BC" not in str(path) and "doc-7" not in str(path)
        assert path.name in (small.blob_id, big.blob_id)
    assert read_back(FileSystemBlobStore(tmp_path), ring, big) == MARKER * 5000 * 20


def test_blob_files_are_private(store: FileSystemBlobStore, ring: KekRing, tmp_path: Path) -> None:
    sealed = seal(b"x", store=store, ring=ring, context=CTX)
    path = tmp_path / "blobs" / sealed.blob_id[:2] / sealed.blob_id

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_failed_upload_leaves_nothing(tmp_path: Path, ring: KekRing) -> None:
    store = FileSystemBlobStore(tmp_path)

    def interrupted() -> Iterator[bytes]:
        yield MARKER * 10_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        seal(interrupted(), store=store, ring=ring, context=CTX)

    assert all_files(tmp_path) == []


def test_sealer_push_api_and_abort(tmp_path: Path, ring: KekRing) -> None:
    store = FileSystemBlobStore(tmp_path)
    with FileSealer(store=store, ring=ring, context=CTX) as sealer:
        sealer.write(b"part one, ")
        sealer.write(b"part two")
        sealed = sealer.finish()
    assert read_back(store, ring, sealed) == b"part one, part two"

    with FileSealer(store=store, ring=ring, context=CTX) as abandoned:
        abandoned.write(MARKER)
    # Leaving the block without finish() discards the partial blob.
    assert all_files(tmp_path) == [tmp_path / sealed.blob_id[:2] / sealed.blob_id]
    with pytest.raises(RuntimeError, match='state "aborted"'):
        abandoned.write(b"more")


def test_unknown_or_malformed_blob_id_is_not_found(store: FileSystemBlobStore) -> None:
    for blob_id in ("0" * 32, "../../etc/passwd", "ABC", ""):
        with pytest.raises(NotFoundOrDenied) as info:
            store.open(blob_id)
        assert info.value.status == 404
        assert info.value.code == "not_found"


def test_delete_is_idempotent(store: FileSystemBlobStore, ring: KekRing) -> None:
    sealed = seal(b"to be removed", store=store, ring=ring, context=CTX)

    store.delete(sealed.blob_id)
    store.delete(sealed.blob_id)

    with pytest.raises(NotFoundOrDenied):
        read_back(store, ring, sealed)


def test_wrong_binding_fails_before_any_output(store: FileSystemBlobStore, ring: KekRing) -> None:
    sealed = seal(MARKER, store=store, ring=ring, context=CTX)
    other_patient = FileContext(file_id="doc-7", patient_id="B7777XY", version=3)

    # The wrapped key is bound too, so this fails on unseal(), not mid-download.
    with pytest.raises(IntegrityError):
        unseal(
            store=store, ring=ring, blob_id=sealed.blob_id,
            wrapped_key=sealed.wrapped_key, context=other_patient,
        )  # fmt: skip


def test_blob_swapped_between_documents_fails(store: FileSystemBlobStore, ring: KekRing) -> None:
    mine = seal(b"my letter", store=store, ring=ring, context=CTX)
    other_ctx = FileContext(file_id="doc-8", patient_id="A1234BC", version=1)
    other = seal(b"someone else's letter", store=store, ring=ring, context=other_ctx)

    stream = unseal(store=store, ring=ring, blob_id=other.blob_id, wrapped_key=mine.wrapped_key, context=CTX)
    with pytest.raises(IntegrityError), stream:
        b"".join(stream)


def test_recorded_digest_mismatch_withholds_last_chunk(store: FileSystemBlobStore, ring: KekRing) -> None:
    sealed = seal(MARKER, store=store, ring=ring, context=CTX)
    stream = unseal(
        store=store, ring=ring, blob_id=sealed.blob_id, wrapped_key=sealed.wrapped_key,
        context=CTX, expected_sha256="0" * 64,
    )  # fmt: skip
    received: list[bytes] = []

    with pytest.raises(IntegrityError, match="SHA-256"), stream:
        received.extend(stream)
    assert received == []


def test_stream_closed_early(store: FileSystemBlobStore, ring: KekRing) -> None:
    sealed = seal(os.urandom(300_000), store=store, ring=ring, context=CTX)

    with unseal(
        store=store, ring=ring, blob_id=sealed.blob_id,
        wrapped_key=sealed.wrapped_key, context=CTX,
    ) as stream:  # fmt: skip
        first = next(stream)

    assert len(first) == 64 * 1024
    with pytest.raises(StopIteration):
        next(stream)


async def test_async_seal_and_unseal(tmp_path: Path, ring: KekRing) -> None:
    store = FileSystemBlobStore(tmp_path)

    async def body() -> AsyncIterator[bytes]:
        for i in range(40):
            yield bytes([i]) * 10_000

    sealed = await aseal(body(), store=store, ring=ring, context=CTX)
    chunks = await aunseal(
        store=store, ring=ring, blob_id=sealed.blob_id,
        wrapped_key=sealed.wrapped_key, context=CTX, expected_sha256=sealed.sha256,
    )  # fmt: skip
    received = [piece async for piece in chunks]

    assert b"".join(received) == b"".join(bytes([i]) * 10_000 for i in range(40))
    assert sealed.size == 400_000


async def test_async_seal_interrupted_leaves_nothing(tmp_path: Path, ring: KekRing) -> None:
    store = FileSystemBlobStore(tmp_path)

    async def body() -> AsyncIterator[bytes]:
        yield MARKER
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await aseal(body(), store=store, ring=ring, context=CTX)
    assert all_files(tmp_path) == []


async def test_async_unseal_missing_blob_raises_before_streaming(
    store: FileSystemBlobStore, ring: KekRing
) -> None:
    sealed = seal(b"x", store=store, ring=ring, context=CTX)
    store.delete(sealed.blob_id)

    with pytest.raises(NotFoundOrDenied):
        await aunseal(
            store=store, ring=ring, blob_id=sealed.blob_id,
            wrapped_key=sealed.wrapped_key, context=CTX,
        )  # fmt: skip
