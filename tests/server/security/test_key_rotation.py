"""A running server picks up a rotated signing key without a restart, and keeps verifying the old one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jose import jwt as jose_jwt

from server.db import session_scope, utcnow
from server.errors import InvalidToken
from server.security.jwt import JwtService
from server.security.keys import KeyRing, ensure_signing_key, rotate_signing_key
from server.security.models import SigningKey
from server.services import Services
from tests.conftest import TEST_SECRET

AUD = "telemed-api"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kid(token: str) -> str:
    return str(jose_jwt.get_unverified_header(token)["kid"])


def test_a_rotation_by_another_process_is_picked_up_and_old_tokens_still_verify(services: Services) -> None:
    secret = TEST_SECRET.encode()
    with session_scope(services.engine) as session:
        ensure_signing_key(session=session, secret=secret)
    clock = Clock()
    ring = KeyRing(engine=services.engine, secret=secret, clock=clock)
    jwt = JwtService(keys=ring, issuer="telemed")
    before = jwt.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=5))
    # `telemed keys rotate` runs in another process: only the database changes.
    with session_scope(services.engine) as session:
        new_kid = rotate_signing_key(session=session, secret=secret, retention=timedelta(hours=1)).kid
    clock.now += KeyRing.REFRESH_S + 1
    after = jwt.issue(subject="u1", audience=AUD, ttl=timedelta(minutes=5))
    assert kid(after) == new_kid != kid(before)
    assert new_kid in {k["kid"] for k in ring.jwks()["keys"]}
    assert jwt.verify(before, audience=AUD)["sub"] == "u1"  # the retired key still verifies
    # Once its retention has passed, the retired key stops verifying, still without a restart.
    with session_scope(services.engine) as session:
        old = session.get(SigningKey, kid(before))
        assert old is not None
        old.verify_until = utcnow() - timedelta(seconds=1)
    clock.now += KeyRing.REFRESH_S + 1
    with pytest.raises(InvalidToken):
        jwt.verify(before, audience=AUD)
    assert kid(before) not in {k["kid"] for k in ring.jwks()["keys"]}
