"""Streaming encryption stays in bounded memory whatever the file size."""

from __future__ import annotations

import hashlib
import secrets
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

from records.crypto import (
    FileContext,
    FileSystemBlobStore,
    KekRing,
    StreamDecryptor,
    StreamEncryptor,
    encrypt_stream,
    generate_data_key,
    seal,
    unseal,
)

SIZE = 50 * 1024 * 1024
PEAK_LIMIT = 4 * 1024 * 1024
CTX = FileContext(file_id="scan-1", patient_id="A1234BC", version=1)


def fifty_megabytes() -> Iterator[bytes]:
    """50 MiB in 100 KB pieces (not chunk-aligned), each freshly allocated."""
    piece = 100_000
    sent = 0
    while sent < SIZE:
        n = min(piece, SIZE - sent)
        yield bytes([sent // piece % 256]) * n
        sent += n


class Sink:
    """A writable that keeps only a running digest, like a socket would keep nothing."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def peak_of(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_encrypting_50_mb_generator_stays_small() -> None:
    sink = Sink()
    results = []

    peak = peak_of(
        lambda: results.append(
            encrypt_stream(fifty_megabytes(), sink, data_key=generate_data_key(), context=CTX)
        )
    )

    assert results[0].size == SIZE
    assert sink.size == results[0].ciphertext_size > SIZE
    assert peak < PEAK_LIMIT, f"peak {peak} bytes"


def test_encrypt_then_decrypt_pipeline_stays_small() -> None:
    key = generate_data_key()
    expected = hashlib.sha256()
    received = Sink()

    def pipeline() -> None:
        enc = StreamEncryptor(key, CTX)
        dec = StreamDecryptor(key, CTX)
        for piece in fifty_megabytes():
            expected.update(piece)
            for plain in dec.chunks(enc.update(piece)):
                received.write(plain)
        received.write(dec.update(enc.finalize()) + dec.finalize())

    peak = peak_of(pipeline)

    assert received.size == SIZE
    assert received.digest.hexdigest() == expected.hexdigest()
    assert peak < PEAK_LIMIT, f"peak {peak} bytes"


def test_blob_store_round_trip_of_50_mb_stays_small(tmp_path: Path) -> None:
    store = FileSystemBlobStore(tmp_path)
    ring = KekRing({1: secrets.token_bytes(32)})
    received = Sink()
    sealed_files = []

    def round_trip() -> None:
        sealed = seal(fifty_megabytes(), store=store, ring=ring, context=CTX)
        sealed_files.append(sealed)
        with unseal(
            store=store, ring=ring, blob_id=sealed.blob_id,
            wrapped_key=sealed.wrapped_key, context=CTX, expected_sha256=sealed.sha256,
        ) as chunks:  # fmt: skip
            for chunk in chunks:
                received.write(chunk)

    peak = peak_of(round_trip)

    assert received.size == SIZE == sealed_files[0].size
    assert received.digest.hexdigest() == sealed_files[0].sha256
    assert peak < PEAK_LIMIT, f"peak {peak} bytes"
