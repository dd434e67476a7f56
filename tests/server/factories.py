"""Make users and tokens the way the product does, for tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from server.db import session_scope
from server.identity import service as identity
from server.identity.models import Role
from server.services import Services

PASSWORD = "correct horse battery staple"


def add_user(services: Services, username: str, role: Role = Role.CLINICIAN, **kw: Any) -> str:
    """Create a user through the identity service; returns its id."""
    with session_scope(services.engine) as session:
        user = identity.create_user(
            session=session,
            username=username,
            password=kw.pop("password", PASSWORD),
            role=role,
            display_name=kw.pop("display_name", username.title()),
            **kw,
        )
        return user.id


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """Sign in over HTTP and return the token response."""
    resp = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
