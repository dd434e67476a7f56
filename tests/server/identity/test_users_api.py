"""User administration over the API: an admin cannot disable their own account."""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.identity.models import Role
from server.services import Services
from tests.server.factories import add_user, bearer, login


def test_an_admin_cannot_disable_their_own_account(client: TestClient, services: Services) -> None:
    admin_id = add_user(services, "root", role=Role.ADMIN)
    token = login(client, "root")["access_token"]
    refused = client.post(f"/api/v1/users/{admin_id}/disable", headers=bearer(token))
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "own_account"
    # Nothing changed: the admin's token still works and the account is still enabled.
    me = client.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["disabled"] is False


def test_an_admin_can_still_disable_someone_else(client: TestClient, services: Services) -> None:
    add_user(services, "root", role=Role.ADMIN)
    other = add_user(services, "root2", role=Role.ADMIN)
    token = login(client, "root")["access_token"]
    resp = client.post(f"/api/v1/users/{other}/disable", headers=bearer(token))
    assert resp.status_code == 200 and resp.json()["disabled"] is True
