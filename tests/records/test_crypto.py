"""Envelope encryption: KEK ring, wrapping, streaming chunks, tampering."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from records.crypto import (
    DEFAULT_CHUNK_SIZE,
    FileContext,
    KekRing,
    StreamDecryptor,
    StreamEncryptor,
    WrappedKey,
    create_kek_file,
    decrypt_stream,
    encrypt_stream,
    generate_data_key,
    iter_decrypt,
    rewrap,
)
from records.crypto.stream import HEADER_SIZE, TAG_SIZE
from records.errors import IntegrityError, KeyConfigError, KeyUnavailable

CHUNK = 1024  # small chunks keep multi-chunk cases cheap
RECORD = CHUNK + TAG_SIZE
CTX = FileContext(file_id="doc-1", patient_id="A1234BC", version=1)


def encrypt(plaintext: bytes, key: bytes, ctx: FileContext = CTX, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plaintext), out, data_key=key, context=ctx, chunk_size=chunk)
    return out.getvalue()


def decrypt(blob: bytes, key: bytes, ctx: FileContext = CTX) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, data_key=key, context=ctx)
    return out.getvalue()


def chunks_of(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + RECORD] for i in range(0, len(body), RECORD)]


@pytest.fixture
def key() -> bytes:
    return generate_data_key()


# --- KEK ring ---------------------------------------------------------------------------------


def test_wrap_unwrap_round_trip_binds_aad() -> None:
    ring = KekRing({1: secrets.token_bytes(32)})
    data_key = generate_data_key()
    wrapped = ring.wrap(data_key, aad=CTX.key_aad())

    assert wrapped.kek_version == 1
    assert ring.unwrap(wrapped, aad=CTX.key_aad()) == data_key
    other = FileContext(file_id="doc-2", patient_id="A1234BC", version=1)
    with pytest.raises(IntegrityError) as info:
        ring.unwrap(wrapped, aad=other.key_aad())
    assert info.value.code == "integrity_error"


def test_unwrap_with_wrong_kek_is_integrity_error() -> None:
    wrapped = KekRing({1: secrets.token_bytes(32)}).wrap(generate_data_key(), aad=b"x")
    impostor = KekRing({1: secrets.token_bytes(32)})

    with pytest.raises(IntegrityError, match="version 1"):
        impostor.unwrap(wrapped, aad=b"x")


def test_relabelled_kek_version_fails() -> None:
    ring = KekRing({1: secrets.token_bytes(32), 2: secrets.token_bytes(32)}, active_version=1)
    wrapped = ring.wrap(generate_data_key(), aad=b"x")
    relabelled = WrappedKey(kek_version=2, nonce=wrapped.nonce, ciphertext=wrapped.ciphertext)

    with pytest.raises(IntegrityError):
        ring.unwrap(relabelled, aad=b"x")


def test_unknown_kek_version_is_key_unavailable() -> None:
    wrapped = KekRing({7: secrets.token_bytes(32)}).wrap(generate_data_key(), aad=b"x")

    with pytest.raises(KeyUnavailable, match="version 7 is not loaded"):
        KekRing({1: secrets.token_bytes(32)}).unwrap(wrapped, aad=b"x")


def test_wrapped_key_bytes_round_trip_and_rejects_garbage() -> None:
    wrapped = KekRing({3: secrets.token_bytes(32)}).wrap(generate_data_key(), aad=b"x")

    assert WrappedKey.from_bytes(wrapped.to_bytes()) == wrapped
    with pytest.raises(IntegrityError):
        WrappedKey.from_bytes(wrapped.to_bytes()[:-1])
    with pytest.raises(IntegrityError, match="unknown format"):
        WrappedKey.from_bytes(b"\x09" + wrapped.to_bytes()[1:])


def test_key_material_never_in_repr_or_errors() -> None:
    raw = secrets.token_bytes(32)
    ring = KekRing({1: raw})
    wrapped = ring.wrap(generate_data_key(), aad=b"x")
    texts = [repr(ring), str(ring), repr(wrapped), repr(CTX)]
    with pytest.raises(IntegrityError) as info:
        KekRing({1: secrets.token_bytes(32)}).unwrap(wrapped, aad=b"x")
    texts.append(str(info.value))

    for text in texts:
        assert raw.hex() not in text
        assert base64.b64encode(raw).decode() not in text
        assert wrapped.ciphertext.hex() not in text
        assert "A1234BC" not in text
    assert repr(ring) == "KekRing(versions=[1], active_version=1)"


def test_active_version_defaults_to_highest() -> None:
    ring = KekRing({1: secrets.token_bytes(32), 3: secrets.token_bytes(32)})

    assert ring.active_version == 3
    assert ring.versions == (1, 3)
    assert ring.wrap(generate_data_key(), aad=b"").kek_version == 3


def test_bad_key_config_is_refused() -> None:
    with pytest.raises(KeyConfigError, match="must be 32 bytes"):
        KekRing({1: b"short"})
    with pytest.raises(KeyConfigError):
        KekRing({})
    with pytest.raises(KeyUnavailable):
        KekRing({1: secrets.token_bytes(32)}, active_version=2)


def test_rewrap_moves_to_active_kek_and_keeps_the_data_key() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    data_key = generate_data_key()
    wrapped = KekRing({1: old}).wrap(data_key, aad=CTX.key_aad())
    rotated_ring = KekRing({1: old, 2: new})

    rewrapped = rewrap(wrapped, ring=rotated_ring, aad=CTX.key_aad())

    assert rewrapped.kek_version == 2
    assert KekRing({2: new}).unwrap(rewrapped, aad=CTX.key_aad()) == data_key
    # Already on the active version: nothing to do.
    assert rewrap(rewrapped, ring=rotated_ring, aad=CTX.key_aad()) is rewrapped


def test_rewrap_keeps_file_ciphertext_readable(key: bytes) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    blob = encrypt(b"clinic letter", key)
    wrapped = KekRing({1: old}).wrap(key, aad=CTX.key_aad())

    rewrapped = rewrap(wrapped, ring=KekRing({1: old, 2: new}), aad=CTX.key_aad())
    # After rotation only the new KEK is needed; the blob itself was never touched.
    recovered = KekRing({2: new}).unwrap(rewrapped, aad=CTX.key_aad())

    assert decrypt(blob, recovered) == b"clinic letter"


def test_rewrap_refuses_wrong_binding() -> None:
    old = secrets.token_bytes(32)
    wrapped = KekRing({1: old}).wrap(generate_data_key(), aad=CTX.key_aad())
    rotated_ring = KekRing({1: old, 2: secrets.token_bytes(32)})

    with pytest.raises(IntegrityError):
        rewrap(wrapped, ring=rotated_ring, aad=b"another file")


def test_key_directory_round_trip(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert create_kek_file(keys) == 1
    assert create_kek_file(keys) == 2
    ring = KekRing.from_directory(keys)

    assert ring.versions == (1, 2)
    assert ring.active_version == 2
    assert stat.S_IMODE((keys / "kek-2.key").stat().st_mode) == 0o600
    wrapped = ring.wrap(generate_data_key(), aad=b"x")
    assert KekRing.from_directory(keys).unwrap(wrapped, aad=b"x")


def test_key_directory_accepts_raw_bytes_and_refuses_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "kek-5.key"
    path.write_bytes(secrets.token_bytes(32))
    path.chmod(0o600)
    assert KekRing.from_directory(tmp_path).active_version == 5

    path.chmod(0o644)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        KekRing.from_directory(tmp_path)


def test_key_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="does not exist"):
        KekRing.from_directory(tmp_path / "missing")
    with pytest.raises(KeyConfigError, match="holds no"):
        KekRing.from_directory(tmp_path)
    bad = tmp_path / "kek-1.key"
    bad.write_text("not base64 at all!\n")
    bad.chmod(0o600)
    with pytest.raises(KeyConfigError, match="neither 32 raw bytes nor base64"):
        KekRing.from_directory(tmp_path)
    create_kek_file(tmp_path / "other", version=4)
    with pytest.raises(KeyConfigError, match="already exists"):
        create_kek_file(tmp_path / "other", version=4)


def test_from_encoded_settings_string() -> None:
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    spec = f"1:{base64.b64encode(k1).decode()}, 2:{base64.urlsafe_b64encode(k2).decode()}"

    ring = KekRing.from_encoded(spec)

    assert ring.versions == (1, 2)
    assert KekRing({1: k1, 2: k2}).unwrap(ring.wrap(b"k" * 32, aad=b""), aad=b"") == b"k" * 32
    with pytest.raises(KeyConfigError, match="given twice"):
        KekRing.from_encoded(f"1:{base64.b64encode(k1).decode()},1:{base64.b64encode(k2).decode()}")
    with pytest.raises(KeyConfigError, match="item 1"):
        KekRing.from_encoded("abc")


# --- streaming encryption ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17], ids=str)
def test_round_trip_sizes(size: int, key: bytes) -> None:
    plaintext = os.urandom(size)
    out = io.BytesIO()

    result = encrypt_stream(io.BytesIO(plaintext), out, data_key=key, context=CTX, chunk_size=CHUNK)

    assert decrypt(out.getvalue(), key) == plaintext
    assert result.size == size
    assert result.sha256 == hashlib.sha256(plaintext).hexdigest()
    chunks = max(1, -(-size // CHUNK))
    assert result.ciphertext_size == len(out.getvalue()) == HEADER_SIZE + size + chunks * TAG_SIZE


def test_default_chunk_size_exact_multiple(key: bytes) -> None:
    plaintext = os.urandom(2 * DEFAULT_CHUNK_SIZE)
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plaintext), out, data_key=key, context=CTX)

    assert decrypt(out.getvalue(), key) == plaintext
    assert len(out.getvalue()) == HEADER_SIZE + len(plaintext) + 2 * TAG_SIZE


def test_five_megabytes_streamed_from_iterator(key: bytes) -> None:
    def pieces() -> Iterator[bytes]:
        for i in range(5 * 1024):  # 5 MiB in odd-sized pieces that straddle chunks
            yield bytes([i % 251]) * 1000
        yield b"tail"

    out = io.BytesIO()
    result = encrypt_stream(pieces(), out, data_key=key, context=CTX)

    expected = b"".join(pieces())
    assert result.size == len(expected)
    received = b"".join(iter_decrypt(io.BytesIO(out.getvalue()), data_key=key, context=CTX))
    assert received == expected


def test_sans_io_pieces_of_any_size(key: bytes) -> None:
    plaintext = os.urandom(4 * CHUNK + 5)
    enc = StreamEncryptor(key, CTX, chunk_size=CHUNK)
    blob = b"".join(enc.update(plaintext[i : i + 7]) for i in range(0, len(plaintext), 7))
    blob += enc.finalize()
    dec = StreamDecryptor(key, CTX)

    got = b"".join(dec.update(blob[i : i + 333]) for i in range(0, len(blob), 333))
    got += dec.finalize()

    assert got == plaintext
    assert dec.result().sha256 == enc.result().sha256
    with pytest.raises(RuntimeError, match='state "finalized"'):
        enc.update(b"late")


def test_same_plaintext_encrypts_differently(key: bytes) -> None:
    assert encrypt(b"same", key) != encrypt(b"same", key)


# --- tampering ---------------------------------------------------------------------------------


@pytest.fixture
def four_chunks(key: bytes) -> tuple[bytes, bytes]:
    plaintext = b"".join(bytes([65 + i]) * CHUNK for i in range(3)) + b"last-part"
    return plaintext, encrypt(plaintext, key)


@pytest.mark.parametrize(
    "offset", [0, 5, HEADER_SIZE, HEADER_SIZE + RECORD + 3, -1], ids=lambda o: f"byte{o}"
)
def test_flipped_byte_is_integrity_error(offset: int, key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    _, blob = four_chunks
    tampered = bytearray(blob)
    tampered[offset] ^= 0x01

    with pytest.raises(IntegrityError) as info:
        decrypt(bytes(tampered), key)
    assert info.value.code == "integrity_error"


def test_swapped_chunks_fail(key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    _, blob = four_chunks
    header, chunks = chunks_of(blob)
    chunks[0], chunks[1] = chunks[1], chunks[0]

    with pytest.raises(IntegrityError, match="Chunk 0"):
        decrypt(header + b"".join(chunks), key)


def test_dropped_last_chunk_fails(key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    _, blob = four_chunks
    header, chunks = chunks_of(blob)

    # Chunk 2 was sealed as "not last", so presenting it as the end is refused.
    with pytest.raises(IntegrityError, match="Chunk 2"):
        decrypt(header + b"".join(chunks[:-1]), key)


@pytest.mark.parametrize("cut", [1, TAG_SIZE, 100], ids=lambda c: f"minus{c}")
def test_truncated_stream_fails(cut: int, key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    _, blob = four_chunks

    with pytest.raises(IntegrityError):
        decrypt(blob[:-cut], key)


def test_truncated_to_header_or_nothing_fails(key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    _, blob = four_chunks
    for prefix in (b"", blob[: HEADER_SIZE - 1], blob[:HEADER_SIZE]):
        with pytest.raises(IntegrityError, match="truncated"):
            decrypt(prefix, key)


def test_appended_chunk_fails(key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    _, blob = four_chunks
    header, chunks = chunks_of(blob)

    with pytest.raises(IntegrityError):
        decrypt(blob + chunks[0], key)


def test_chunk_spliced_from_another_file_fails(key: bytes) -> None:
    a = encrypt(b"a" * (2 * CHUNK), key)
    b = encrypt(b"b" * (2 * CHUNK), key)
    header_a, chunks_a = chunks_of(a)
    _, chunks_b = chunks_of(b)

    with pytest.raises(IntegrityError, match="Chunk 0"):
        decrypt(header_a + chunks_b[0] + chunks_a[1], key)


@pytest.mark.parametrize(
    "wrong",
    [
        FileContext(file_id="doc-2", patient_id="A1234BC", version=1),
        FileContext(file_id="doc-1", patient_id="Z9999ZZ", version=1),
        FileContext(file_id="doc-1", patient_id="A1234BC", version=2),
    ],
    ids=["file_id", "patient_id", "version"],
)
def test_wrong_binding_fails(wrong: FileContext, key: bytes) -> None:
    blob = encrypt(b"bound to doc-1 v1", key)

    with pytest.raises(IntegrityError):
        decrypt(blob, key, wrong)


def test_wrong_data_key_fails(key: bytes) -> None:
    with pytest.raises(IntegrityError):
        decrypt(encrypt(b"x", key), generate_data_key())


def test_no_plaintext_from_a_failing_chunk(key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    plaintext, blob = four_chunks
    tampered = bytearray(blob)
    tampered[HEADER_SIZE + 2 * RECORD + 10] ^= 0x80  # inside chunk 2
    received: list[bytes] = []

    with pytest.raises(IntegrityError, match="Chunk 2"):
        for piece in iter_decrypt(io.BytesIO(bytes(tampered)), data_key=key, context=CTX):
            received.append(piece)

    # Only chunks 0 and 1 verified; nothing of chunk 2 or later was released.
    assert b"".join(received) == plaintext[: 2 * CHUNK]


def test_not_a_blob_is_refused(key: bytes) -> None:
    with pytest.raises(IntegrityError, match="not an encrypted records blob"):
        decrypt(b"%PDF-1.7 plain file pretending" * 10, key)


def test_finalize_picks_up_chunks_left_unread(key: bytes, four_chunks: tuple[bytes, bytes]) -> None:
    plaintext, blob = four_chunks
    dec = StreamDecryptor(key, CTX)

    dec.chunks(blob)  # the caller never iterates the verified chunks

    assert dec.finalize() == plaintext
