"""Sign-in, refresh rotation with reuse detection, logout, user admin — on both databases.

Throttling of failed sign-ins is in tests/server/identity/test_login_throttle.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from argon2 import PasswordHasher, extract_parameters
from fastapi.testclient import TestClient

from server.db import session_scope
from server.errors import ValidationFailed
from server.identity.models import Role, User
from server.services import Services
from tests.server.factories import PASSWORD, add_user, bearer, login

PROBLEM = "application/problem+json"


def test_login_returns_short_lived_access_and_refresh_token(client: TestClient, services: Services) -> None:
    add_user(services, "alice")
    body = login(client, "alice")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] <= 15 * 60
    assert body["refresh_token"].startswith("rt_")
    assert body["user"]["username"] == "alice" and body["user"]["role"] == "clinician"
    assert "password_hash" not in body["user"] and "failed_logins" not in body["user"]
    me = client.get("/api/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == "alice"


def test_wrong_password_and_unknown_user_answer_the_same(client: TestClient, services: Services) -> None:
    add_user(services, "alice")
    wrong = client.post("/api/v1/auth/login", json={"username": "alice", "password": "not the password"})
    unknown = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "not the password"})
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["code"] == "invalid_credentials"
    assert wrong.json()["detail"] == unknown.json()["detail"]


def _at_once(n: int, request: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send ``n`` requests from ``n`` threads released together (the server handles them in parallel)."""
    start = threading.Barrier(n)
    answers: list[httpx.Response] = []

    def one() -> None:
        start.wait()
        answers.append(request())

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == n
    return answers


def test_disabled_user_cannot_sign_in_and_loses_sessions(client: TestClient, services: Services) -> None:
    add_user(services, "root", role=Role.ADMIN)
    alice_id = add_user(services, "alice")
    admin = login(client, "root")
    alice = login(client, "alice")
    resp = client.post(f"/api/v1/users/{alice_id}/disable", headers=bearer(admin["access_token"]))
    assert resp.status_code == 200 and resp.json()["disabled"] is True
    assert client.get("/api/v1/me", headers=bearer(alice["access_token"])).json()["code"] == "invalid_token"
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": alice["refresh_token"]})
    assert again.status_code == 401
    relogin = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert relogin.json()["code"] == "invalid_credentials"


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient, services: Services) -> None:
    add_user(services, "alice")
    first = login(client, "alice")
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]

    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "refresh_token_reused"
    # The thief's replay also killed the legitimate, newer refresh token.
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status_code == 401
    assert after.json()["code"] == "refresh_token_reused"


def test_a_refresh_token_used_twice_at_once_is_reuse(client: TestClient, services: Services) -> None:
    add_user(services, "alice")
    first = login(client, "alice")
    answers = _at_once(
        6, lambda: client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    )
    codes = sorted(r.json().get("code", "rotated") for r in answers)
    assert codes == ["refresh_token_reused"] * 5 + ["rotated"]
    # As with a replay one at a time, the whole session is revoked: the winner's token too.
    winner = next(r.json() for r in answers if r.status_code == 200)
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": winner["refresh_token"]})
    assert after.status_code == 401 and after.json()["code"] == "refresh_token_reused"


def test_unknown_refresh_token_is_refused(client: TestClient) -> None:
    resp = client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_made-up"})
    assert resp.status_code == 401 and resp.json()["code"] == "invalid_token"


def test_logout_revokes_access_and_refresh(client: TestClient, services: Services) -> None:
    add_user(services, "alice")
    tokens = login(client, "alice")
    resp = client.post(
        "/api/v1/auth/logout",
        headers=bearer(tokens["access_token"]),
        json={"refresh_token": tokens["refresh_token"]},
    )
    assert resp.status_code == 204
    me = client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401 and me.json()["code"] == "invalid_token"
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


def test_only_admins_manage_users(client: TestClient, services: Services) -> None:
    add_user(services, "root", role=Role.ADMIN)
    add_user(services, "alice")
    admin = login(client, "root")["access_token"]
    clinician = login(client, "alice")["access_token"]
    new_user = {
        "username": "bob",
        "display_name": "Dr Bob",
        "role": "specialist",
        "password": "x" * 16,
    }
    denied = client.post("/api/v1/users", json=new_user, headers=bearer(clinician))
    assert denied.status_code == 403 and denied.json()["code"] == "access_denied"
    created = client.post("/api/v1/users", json=new_user, headers=bearer(admin))
    assert created.status_code == 201 and created.json()["role"] == "specialist"
    dup = client.post("/api/v1/users", json=new_user, headers=bearer(admin))
    assert dup.status_code == 409 and dup.json()["code"] == "already_exists"
    listed = client.get("/api/v1/users", headers=bearer(admin)).json()
    assert sorted(u["username"] for u in listed) == ["alice", "bob", "root"]


def test_short_password_rejected_without_echo(client: TestClient, services: Services) -> None:
    add_user(services, "root", role=Role.ADMIN)
    admin = login(client, "root")["access_token"]
    resp = client.post(
        "/api/v1/users",
        json={
            "username": "bob",
            "display_name": "Bob",
            "role": "clinician",
            "password": "short-secret"[:8],
        },
        headers=bearer(admin),
    )
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "validation_error"
    assert body["errors"][0]["loc"][-1] == "password"
    assert "short-se" not in resp.text


def test_missing_and_malformed_bearer(client: TestClient) -> None:
    assert client.get("/api/v1/me").json()["code"] == "authentication_required"
    resp = client.get("/api/v1/me", headers=bearer("not-a-jwt"))
    assert resp.status_code == 401 and resp.json()["code"] == "invalid_token"
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_usernames_are_checked_by_the_service(services: Services) -> None:
    with pytest.raises(ValidationFailed, match="Usernames"):
        add_user(services, "Bad Name!")


def test_passwords_are_stored_with_argon2id_and_weak_hashes_are_upgraded_at_login(
    client: TestClient, services: Services
) -> None:
    alice_id = add_user(services, "alice")
    with session_scope(services.engine) as session:
        alice = session.get(User, alice_id)
        assert alice is not None and PASSWORD not in alice.password_hash
        stored = extract_parameters(alice.password_hash)
        assert alice.password_hash.startswith("$argon2id$")
        assert stored.memory_cost >= 19 * 1024 and stored.time_cost >= 2  # OWASP's baseline
        # As if hashed years ago with weaker parameters.
        alice.password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    login(client, "alice")
    with session_scope(services.engine) as session:
        alice = session.get(User, alice_id)
        assert alice is not None
        assert extract_parameters(alice.password_hash) == stored
    login(client, "alice")  # and the new hash verifies
