"""Device keys: RFC 8037 vectors, the base64url public form, thumbprints and key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_policy.attestation import (
    generate_device_key,
    key_thumbprint,
    load_private_key,
    load_public_key_b64,
    public_key_b64,
    save_private_key,
)
from device_policy.errors import InsecureKeyFile, KeyMaterialError
from device_policy.keys import b64url_decode, b64url_encode, load_public_jwk, public_jwk

# RFC 8037 appendix A.1-A.3.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8037_SIGNING_INPUT = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIGNATURE = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"


def rfc8037_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_D))


def test_public_key_is_the_raw_key_in_base64url() -> None:
    assert public_key_b64(rfc8037_key().public_key()) == RFC8037_X


def test_thumbprint_matches_rfc8037() -> None:
    assert key_thumbprint(rfc8037_key().public_key()) == RFC8037_THUMBPRINT


def test_signature_matches_rfc8037() -> None:
    assert b64url_encode(rfc8037_key().sign(RFC8037_SIGNING_INPUT)) == RFC8037_SIGNATURE


def test_public_key_round_trips() -> None:
    public = generate_device_key().public_key()

    loaded = load_public_key_b64(public_key_b64(public))

    assert key_thumbprint(loaded) == key_thumbprint(public)


def test_public_jwk_round_trips_and_holds_only_required_members() -> None:
    public = rfc8037_key().public_key()

    jwk = public_jwk(public)

    assert jwk == {"crv": "Ed25519", "kty": "OKP", "x": RFC8037_X}
    assert public_key_b64(load_public_jwk(jwk)) == RFC8037_X


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({"crv": "Ed25519", "kty": "OKP"}, "exactly crv, kty and x"),
        ({"crv": "Ed25519", "kty": "OKP", "x": RFC8037_X, "d": RFC8037_D}, "exactly crv, kty"),
        ({"crv": "X25519", "kty": "OKP", "x": RFC8037_X}, "not an OKP Ed25519 key"),
        ({"crv": "Ed25519", "kty": "EC", "x": RFC8037_X}, "not an OKP Ed25519 key"),
    ],
)
def test_other_jwks_are_refused(jwk: dict[str, str], message: str) -> None:
    with pytest.raises(KeyMaterialError, match=message):
        load_public_jwk(jwk)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (RFC8037_X + "=", "not unpadded base64url"),
        (RFC8037_X[:-1] + "+", "not unpadded base64url"),
        (RFC8037_X[:-1] + "p", "not unpadded base64url"),  # non-zero trailing bits
        (RFC8037_X[:40], "32 bytes, not 30"),
        ("", "32 bytes, not 0"),
    ],
)
def test_bad_public_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(KeyMaterialError, match=message) as caught:
        load_public_key_b64(text)

    assert caught.value.code == "invalid_key"


def test_different_keys_have_different_thumbprints() -> None:
    first, second = generate_device_key(), generate_device_key()

    assert key_thumbprint(first.public_key()) != key_thumbprint(second.public_key())


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_private_key_file_is_written_0600_and_loads_back(tmp_path: Path) -> None:
    key = generate_device_key()
    path = tmp_path / "device.key"

    save_private_key(path, key)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    assert key_thumbprint(loaded.public_key()) == key_thumbprint(key.public_key())
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_private_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        save_private_key(tmp_path / "device.key", generate_device_key())
    finally:
        os.umask(previous)

    assert stat.S_IMODE((tmp_path / "device.key").stat().st_mode) == 0o600


def test_an_existing_key_file_is_not_replaced_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    first = generate_device_key()
    save_private_key(path, first)

    with pytest.raises(FileExistsError):
        save_private_key(path, generate_device_key())
    second = generate_device_key()
    save_private_key(path, second, overwrite=True)

    assert key_thumbprint(load_private_key(path).public_key()) == key_thumbprint(second.public_key())


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "device.key"
    save_private_key(path, generate_device_key())
    path.chmod(mode)

    with pytest.raises(InsecureKeyFile) as caught:
        load_private_key(path)

    assert caught.value.code == "insecure_key_file"
    assert f"has mode {mode:o}; it must be 600 or stricter" in str(caught.value)


def test_a_key_file_holding_another_key_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)

    with pytest.raises(KeyMaterialError, match="not Ed25519"):
        load_private_key(path)


def test_a_key_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    path.write_text("not a key")
    path.chmod(0o600)

    with pytest.raises(KeyMaterialError, match="does not hold an unencrypted PEM key"):
        load_private_key(path)
