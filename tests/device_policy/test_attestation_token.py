"""Posture tokens through a real ES256 signer (python-jose), and the key binding."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt
from jose.exceptions import JWTError

from device_policy.attestation import generate_device_key, key_thumbprint
from device_policy.errors import (
    InvalidPostureToken,
    KeyBindingMismatch,
    TokenLifetimeTooLong,
)
from device_policy.policy import (
    DeviceKind,
    EnrolledIdentity,
    evaluate,
    load_default_policy,
    policy_hash,
)
from device_policy.posture_token import (
    POSTURE_AUDIENCE,
    PostureClaims,
    TokenSigner,
    issue_posture_token,
    verify_posture_token,
)
from device_policy.proof import sign_request_proof, verify_request_proof
from device_policy.simulated import simulated_facts


class JoseSigner:
    """A small but real ES256 signer satisfying ``TokenSigner`` (the server has its own)."""

    def __init__(self, issuer: str = "https://telemed.test") -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self._private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self._public = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self._issuer = issuer

    def issue(self, *, subject: str, audience: str, ttl: timedelta, claims: Mapping[str, Any]) -> str:
        now = datetime.now(UTC)
        extra = dict(claims)
        payload = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": extra.pop("jti", None) or secrets.token_urlsafe(16),
            **extra,
        }
        return jwt.encode(payload, self._private, algorithm="ES256", headers={"kid": "test-1"})

    def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=["ES256"],
                audience=audience,
                issuer=self._issuer,
                options={"leeway": 30, "require_jti": True},
            )
        except JWTError as exc:
            raise InvalidPostureToken("The token's signature or claims are not valid") from exc
        return claims


SIGNER: TokenSigner = JoseSigner()
DEVICE_KEY = generate_device_key()
THUMBPRINT = key_thumbprint(DEVICE_KEY.public_key())
POLICY = load_default_policy()


def issue(**changes: Any) -> str:
    arguments: dict[str, Any] = {
        "signer": SIGNER,
        "device_id": "lap-0007",
        "device_kind": DeviceKind.PRISON_LAPTOP,
        "thumbprint": THUMBPRINT,
        "policy_version": POLICY.version,
        "policy_hash": policy_hash(POLICY),
    }
    arguments.update(changes)
    return issue_posture_token(**arguments)


def test_a_posture_token_carries_device_policy_and_key_binding() -> None:
    token = issue(jti="posture-1")

    claims = verify_posture_token(signer=SIGNER, token=token, expected_thumbprint=THUMBPRINT)

    assert isinstance(claims, PostureClaims)
    assert claims.device_id == "lap-0007"
    assert claims.aud == POSTURE_AUDIENCE == "telemed-posture"
    assert claims.device_kind is DeviceKind.PRISON_LAPTOP
    assert (claims.policy_version, claims.policy_hash) == (POLICY.version, policy_hash(POLICY))
    assert claims.jkt == THUMBPRINT
    assert claims.jti == "posture-1"
    assert claims.exp - claims.iat == 300  # the default five minutes
    assert jwt.get_unverified_claims(token)["cnf"] == {"jkt": THUMBPRINT}


def test_ten_minutes_is_the_longest_posture_token() -> None:
    claims = verify_posture_token(signer=SIGNER, token=issue(ttl=timedelta(minutes=10)))

    assert claims.exp - claims.iat == 600


@pytest.mark.parametrize("ttl", [timedelta(minutes=10, seconds=1), timedelta(hours=1)])
def test_a_longer_lifetime_is_refused_at_issue(ttl: timedelta) -> None:
    with pytest.raises(TokenLifetimeTooLong) as caught:
        issue(ttl=ttl)

    assert caught.value.code == "token_lifetime_too_long"


def test_a_non_positive_lifetime_is_refused_at_issue() -> None:
    with pytest.raises(ValueError, match="positive time"):
        issue(ttl=timedelta(0))


def test_a_token_bound_to_another_key_is_a_key_binding_mismatch() -> None:
    other = key_thumbprint(generate_device_key().public_key())

    with pytest.raises(KeyBindingMismatch) as caught:
        verify_posture_token(signer=SIGNER, token=issue(jti="posture-2"), expected_thumbprint=other)

    assert caught.value.code == "key_binding_mismatch"
    assert str(caught.value) == 'Posture token "posture-2" is bound to another device key'
    assert caught.value.extra == {"jti": "posture-2"}


def test_a_token_for_another_audience_is_refused_by_the_signer() -> None:
    token = SIGNER.issue(subject="lap-0007", audience="telemed-records", ttl=timedelta(minutes=5), claims={})

    with pytest.raises(InvalidPostureToken):
        verify_posture_token(signer=SIGNER, token=token)


def test_a_token_from_another_signer_is_refused() -> None:
    with pytest.raises(InvalidPostureToken):
        verify_posture_token(signer=SIGNER, token=issue(signer=JoseSigner()))


def test_a_posture_audience_token_without_posture_claims_is_refused() -> None:
    token = SIGNER.issue(subject="lap-0007", audience=POSTURE_AUDIENCE, ttl=timedelta(minutes=5), claims={})

    with pytest.raises(InvalidPostureToken) as caught:
        verify_posture_token(signer=SIGNER, token=token)

    assert str(caught.value) == (
        "The token lacks posture claims: cnf, device_kind, policy_hash, policy_version"
    )


def test_a_signed_token_living_longer_than_ten_minutes_is_refused() -> None:
    # Someone issued it around issue_posture_token; verification still holds the line.
    token = SIGNER.issue(
        subject="lap-0007",
        audience=POSTURE_AUDIENCE,
        ttl=timedelta(hours=8),
        claims={
            "device_kind": "prison_laptop",
            "policy_version": POLICY.version,
            "policy_hash": policy_hash(POLICY),
            "cnf": {"jkt": THUMBPRINT},
        },
    )

    with pytest.raises(InvalidPostureToken, match="longer than a posture token may"):
        verify_posture_token(signer=SIGNER, token=token)


def test_posture_flow_end_to_end_refuses_a_stolen_token() -> None:
    """Evaluate, issue, then use the token with proofs from the owner and from a thief."""
    enrolled = EnrolledIdentity(
        device_id="lap-0007",
        device_kind=DeviceKind.PRISON_LAPTOP,
        iccid="8944110000000000017",
        imsi="234150000000017",
        imei="356938035643817",
    )
    result = evaluate(
        POLICY, simulated_facts("compliant", enrolled=enrolled), platform="linux", enrolled=enrolled
    )
    assert result.compliant
    token = issue(policy_version=result.policy_version, policy_hash=result.policy_hash)
    url = "wss://telemed.example/ws/signalling"
    now = datetime.now(UTC)

    def present(key: Any) -> None:
        claims = verify_posture_token(signer=SIGNER, token=token)
        proof = sign_request_proof(key, method="GET", url=url, token_jti=claims.jti, iat=now, nonce="hello-1")
        verify_request_proof(
            proof,
            expected_thumbprint=claims.jkt,
            method="GET",
            url=url,
            token_jti=claims.jti,
            nonce="hello-1",
            now=now,
        )

    present(DEVICE_KEY)
    with pytest.raises(KeyBindingMismatch):
        present(generate_device_key())
