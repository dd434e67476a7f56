"""Request proofs: the holder of the bound key passes, everyone else is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from device_policy.attestation import generate_device_key, key_thumbprint
from device_policy.errors import ClockSkew, InvalidRequestProof, KeyBindingMismatch
from device_policy.keys import b64url_decode, b64url_encode, public_jwk
from device_policy.proof import (
    PROOF_CONTEXT,
    normalize_htu,
    sign_request_proof,
    verify_request_proof,
)

NOW = datetime(2026, 11, 28, 9, 30, 0, tzinfo=UTC)
DEVICE_KEY = generate_device_key()
THUMBPRINT = key_thumbprint(DEVICE_KEY.public_key())
URL = "https://telemed.example/api/records/patients/p-1"


def make_proof(key: Any = DEVICE_KEY, **changes: Any) -> str:
    arguments: dict[str, Any] = {
        "method": "GET",
        "url": URL,
        "token_jti": "jti-123",
        "iat": NOW,
        "nonce": "server-nonce-1",
    }
    arguments.update(changes)
    return sign_request_proof(key, **arguments)


def check(proof: str, **changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "expected_thumbprint": THUMBPRINT,
        "method": "GET",
        "url": URL,
        "token_jti": "jti-123",
        "nonce": "server-nonce-1",
        "now": NOW,
    }
    arguments.update(changes)
    return verify_request_proof(proof, **arguments)


def test_the_key_holder_passes_and_the_proof_says_what_it_covers() -> None:
    proof = check(make_proof())

    assert proof.htm == "GET"
    assert proof.htu == URL
    assert proof.token_jti == "jti-123"
    assert proof.nonce == "server-nonce-1"
    assert proof.iat == int(NOW.timestamp())
    assert proof.thumbprint == THUMBPRINT


def test_the_proof_is_canonical_json_and_an_ed25519_signature() -> None:
    body_part, signature_part = make_proof().split(".")
    body = b64url_decode(body_part)

    assert json.loads(body) == {
        "htm": "GET",
        "htu": URL,
        "iat": int(NOW.timestamp()),
        "jwk": public_jwk(DEVICE_KEY.public_key()),
        "nonce": "server-nonce-1",
        "token_jti": "jti-123",
    }
    DEVICE_KEY.public_key().verify(b64url_decode(signature_part), PROOF_CONTEXT + body)


def test_a_stolen_token_used_with_another_device_key_is_a_key_binding_mismatch() -> None:
    thief = generate_device_key()

    with pytest.raises(KeyBindingMismatch) as caught:
        check(make_proof(thief))

    assert (caught.value.code, caught.value.status) == ("key_binding_mismatch", 401)
    assert str(caught.value) == ('The proof for token "jti-123" is signed by a key the token is not bound to')


def test_another_key_claiming_the_bound_public_key_fails_the_signature() -> None:
    body_part, _ = make_proof().split(".")
    forged = generate_device_key().sign(PROOF_CONTEXT + b64url_decode(body_part))

    with pytest.raises(InvalidRequestProof, match="signature does not verify"):
        check(f"{body_part}.{b64url_encode(forged)}")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": "POST"}, "htm"),
        ({"url": "https://telemed.example/api/records/patients/p-2"}, "htu"),
        ({"url": "https://evil.example/api/records/patients/p-1"}, "htu"),
        ({"token_jti": "jti-456"}, "token_jti"),
        ({"nonce": "server-nonce-2"}, "nonce"),
    ],
)
def test_a_proof_for_another_request_is_refused(change: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequestProof) as caught:
        check(make_proof(), **change)

    assert caught.value.code == "invalid_proof"
    assert str(caught.value) == f'The proof was made for another "{field}"'


def test_query_fragment_and_host_case_do_not_matter() -> None:
    proof = make_proof(url="HTTPS://Telemed.Example/api/records/patients/p-1?x=1#top", method="get")

    assert check(proof).htu == URL


@pytest.mark.parametrize("offset", [timedelta(seconds=61), timedelta(seconds=-61)])
def test_an_old_or_future_proof_is_clock_skew(offset: timedelta) -> None:
    with pytest.raises(ClockSkew) as caught:
        check(make_proof(iat=NOW + offset))

    assert caught.value.code == "clock_skew"


def test_a_tampered_payload_is_refused() -> None:
    body_part, signature_part = make_proof().split(".")
    claims = json.loads(b64url_decode(body_part))
    claims["htm"] = "DELETE"
    tampered = b64url_encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())

    with pytest.raises(InvalidRequestProof, match="signature does not verify"):
        check(f"{tampered}.{signature_part}", method="DELETE")


def test_a_validly_signed_but_non_canonical_payload_is_refused() -> None:
    body_part, _ = make_proof().split(".")
    spaced = json.dumps(json.loads(b64url_decode(body_part)), indent=1).encode()
    signature = DEVICE_KEY.sign(PROOF_CONTEXT + spaced)

    with pytest.raises(InvalidRequestProof, match="not canonical JSON"):
        check(f"{b64url_encode(spaced)}.{b64url_encode(signature)}")


def test_an_attestation_signature_is_not_a_proof_signature() -> None:
    # Same key, same bytes, but without the proof context: domain separation refuses it.
    body_part, _ = make_proof().split(".")
    signature = DEVICE_KEY.sign(b64url_decode(body_part))

    with pytest.raises(InvalidRequestProof, match="signature does not verify"):
        check(f"{body_part}.{b64url_encode(signature)}")


@pytest.mark.parametrize(
    "proof",
    ["", "abc", "a.b.c", "!!.!!", "e30.AAAA", "x" * 5000, b64url_encode(b"[]") + ".AAAA"],
)
def test_garbage_is_refused(proof: str) -> None:
    with pytest.raises(InvalidRequestProof):
        check(proof)


def test_a_proof_carrying_a_non_ed25519_key_is_refused() -> None:
    body_part, signature_part = make_proof().split(".")
    claims = json.loads(b64url_decode(body_part))
    claims["jwk"] = {"crv": "P-256", "kty": "EC", "x": claims["jwk"]["x"]}
    body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()

    with pytest.raises(InvalidRequestProof, match="proof key is not usable"):
        check(f"{b64url_encode(body)}.{signature_part}")


def test_normalize_htu_needs_an_absolute_url() -> None:
    with pytest.raises(ValueError, match="scheme and a host"):
        normalize_htu("/api/records")

    assert normalize_htu("wss://Telemed.Example") == "wss://telemed.example/"


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("wss://Telemed.Example:443/ws/v1/signalling?x=1#f", "wss://telemed.example/ws/v1/signalling"),
        ("ws://127.0.0.1:80/ws/v1/signalling", "ws://127.0.0.1/ws/v1/signalling"),
        ("https://h.example:443/api", "https://h.example/api"),
        ("ws://127.0.0.1:8000/ws/v1/signalling", "ws://127.0.0.1:8000/ws/v1/signalling"),
        ("wss://h.example:8443/ws/v1/signalling", "wss://h.example:8443/ws/v1/signalling"),
        ("wss://[::1]:443/ws", "wss://[::1]/ws"),
    ],
)
def test_normalize_htu_drops_only_the_default_port(url: str, htu: str) -> None:
    assert normalize_htu(url) == htu
