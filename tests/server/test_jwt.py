"""The JWT module: what it accepts, what it refuses, and key rotation — on both databases."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from jose import jwt as jose_jwt
from pydantic import ValidationError

from server.db import session_scope
from server.errors import InvalidToken
from server.security.jwt import JwtService, TokenExpired, WrongAudience
from server.security.keys import KeyRing, rotate_signing_key
from server.services import Services
from server.settings import Settings
from tests.conftest import TEST_SECRET
from tests.server.factories import add_user, bearer, login

AUD = "telemed-api"


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.fixture
def jwt(client: TestClient, services: Services) -> JwtService:
    return services.jwt  # the client fixture ran the lifespan, so a signing key exists


def test_round_trip_carries_required_claims(jwt: JwtService) -> None:
    token = jwt.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=5), claims={"role": "admin"})
    claims = jwt.verify(token, audience=AUD)
    assert claims["sub"] == "u1" and claims["role"] == "admin" and claims["iss"] == "telemed"
    assert {"exp", "nbf", "iat", "jti"} <= claims.keys()
    header = jose_jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"]


def test_reserved_claims_cannot_be_smuggled(jwt: JwtService) -> None:
    with pytest.raises(ValueError, match="reserved"):
        jwt.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=1), claims={"aud": "other"})


def test_tampered_payload_rejected(jwt: JwtService) -> None:
    token = jwt.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=5), claims={"role": "clinician"})
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    with pytest.raises(InvalidToken):
        jwt.verify(f"{head}.{_b64(claims)}.{sig}", audience=AUD)


def test_expired_rejected(jwt: JwtService) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    token = jwt.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=1), not_before=past)
    with pytest.raises(TokenExpired) as err:
        jwt.verify(token, audience=AUD)
    assert err.value.code == "token_expired"


def test_not_yet_valid_rejected(jwt: JwtService) -> None:
    future = datetime.now(UTC) + timedelta(minutes=10)
    token = jwt.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=5), not_before=future)
    with pytest.raises(InvalidToken):
        jwt.verify(token, audience=AUD)


def test_issued_in_the_future_rejected(jwt: JwtService, services: Services) -> None:
    key = services.keys.signer()
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "telemed", "sub": "u1", "aud": AUD, "nbf": now, "exp": now + 600, "jti": "j"}
    forged = jose_jwt.encode(
        {**claims, "iat": now + 300}, key.private_pem, algorithm="ES256", headers={"kid": key.kid}
    )
    with pytest.raises(InvalidToken, match="issued in the future"):
        jwt.verify(forged, audience=AUD)


def test_leeway_is_at_most_a_minute_and_applies_to_expiry(jwt: JwtService, services: Services) -> None:
    with pytest.raises(ValueError, match="60 seconds"):
        JwtService(keys=services.keys, issuer="telemed", leeway_s=61)
    with pytest.raises(ValidationError, match="60"):
        Settings(jwt_leeway_s=61)
    strict, lenient = (JwtService(keys=services.keys, issuer="telemed", leeway_s=s) for s in (0, 60))
    # Lived a minute, ended 20 seconds ago.
    token = strict.issue(
        subject="u1",
        audience=AUD,
        ttl=timedelta(minutes=1),
        not_before=datetime.now(UTC) - timedelta(seconds=80),
    )
    assert lenient.verify(token, audience=AUD)["sub"] == "u1"
    with pytest.raises(TokenExpired):
        strict.verify(token, audience=AUD)


def test_wrong_audience_rejected(jwt: JwtService) -> None:
    token = jwt.issue(subject="u1", audience="telemed-records", ttl=timedelta(minutes=5))
    with pytest.raises(WrongAudience) as err:
        jwt.verify(token, audience=AUD)
    assert err.value.code == "wrong_audience"


def test_alg_none_rejected(jwt: JwtService) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": "telemed",
        "sub": "u1",
        "aud": AUD,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "x",
    }
    kid = jwt_kid(jwt)
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}."
    with pytest.raises(InvalidToken, match="algorithm"):
        jwt.verify(unsigned, audience=AUD)


def jwt_kid(jwt: JwtService) -> str:
    token = jwt.issue(subject="x", audience=AUD, ttl=timedelta(minutes=1))
    kid: str = jose_jwt.get_unverified_header(token)["kid"]
    return kid


def test_hs256_signed_with_public_key_rejected(jwt: JwtService, services: Services) -> None:
    """The classic key-confusion attack: HMAC keyed with the server's public PEM."""
    kid = jwt_kid(jwt)
    public_pem = services.keys.verifier(kid).public_pem  # type: ignore[union-attr]
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": "telemed",
        "sub": "u1",
        "aud": AUD,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "x",
    }
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}"
    sig = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="algorithm"):
        jwt.verify(forged, audience=AUD)


def test_unknown_kid_and_missing_jti_rejected(jwt: JwtService, services: Services) -> None:
    key = services.keys.signer()
    now = int(datetime.now(UTC).timestamp())
    no_jti = {"iss": "telemed", "sub": "u1", "aud": AUD, "iat": now, "nbf": now, "exp": now + 60}
    token = jose_jwt.encode(no_jti, key.private_pem, algorithm="ES256", headers={"kid": key.kid})
    with pytest.raises(InvalidToken):
        jwt.verify(token, audience=AUD)
    other_kid = jose_jwt.encode(
        {**no_jti, "jti": "j"}, key.private_pem, algorithm="ES256", headers={"kid": "nope"}
    )
    with pytest.raises(InvalidToken, match="unknown key"):
        jwt.verify(other_kid, audience=AUD)


def test_wrong_issuer_rejected(jwt: JwtService, services: Services) -> None:
    other = JwtService(keys=services.keys, issuer="someone-else")
    token = other.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=1))
    with pytest.raises(InvalidToken):
        jwt.verify(token, audience=AUD)


def test_key_rotation_old_tokens_verify_new_tokens_use_new_kid(
    client: TestClient, services: Services, jwt: JwtService
) -> None:
    add_user(services, "alice")
    old = login(client, "alice")["access_token"]
    old_kid = jose_jwt.get_unverified_header(old)["kid"]
    # Rotate the way `telemed keys rotate` does, from "another process": a separate key ring.
    with session_scope(services.engine) as session:
        rotate_signing_key(session=session, secret=TEST_SECRET.encode(), retention=timedelta(hours=1))
    fresh_ring = KeyRing(engine=services.engine, secret=TEST_SECRET.encode())
    fresh_ring.load()
    new_kid = fresh_ring.signer().kid
    assert new_kid != old_kid
    services.keys.load()  # what a restart or the periodic reload does
    new = login(client, "alice")["access_token"]
    assert jose_jwt.get_unverified_header(new)["kid"] == new_kid
    assert client.get("/api/v1/me", headers=bearer(old)).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(new)).status_code == 200
    kids = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert {old_kid, new_kid} <= kids


def test_retired_key_stops_verifying_after_retention(client: TestClient, services: Services) -> None:
    add_user(services, "alice")
    old = login(client, "alice")["access_token"]
    with session_scope(services.engine) as session:
        rotate_signing_key(session=session, secret=TEST_SECRET.encode(), retention=timedelta(seconds=-1))
    services.keys.load()
    resp = client.get("/api/v1/me", headers=bearer(old))
    assert resp.status_code == 401 and resp.json()["code"] == "invalid_token"


def test_jwks_publishes_public_keys_only(client: TestClient) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert keys and all(k["kty"] == "EC" and k["alg"] == "ES256" and "d" not in k for k in keys)
