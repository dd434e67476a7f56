"""A small HTTP client for the demo's calls to the telemed API (JSON in, problem+json out)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiRefused(Exception):
    """The server answered with an error: its problem ``code`` and HTTP ``status``."""

    def __init__(self, *, method: str, path: str, status: int, code: str, detail: str) -> None:
        super().__init__(f"{method} {path} answered {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def bearer(access_token: str) -> dict[str, str]:
    """The ``Authorization`` header for an access token."""
    return {"Authorization": f"Bearer {access_token}"}


class Api:
    """Calls one telemed server; every error answer becomes :class:`ApiRefused`."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (what request proofs are signed over)."""
        return f"{self.base_url}{path}"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Make a request; return the response if it succeeded, else raise :class:`ApiRefused`."""
        response = await self.http.request(method, path, **kwargs)
        if response.is_success:
            return response
        raise refusal(method, path, response)

    async def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Make a request and return its JSON object."""
        body = (await self.send(method, path, **kwargs)).json()
        if not isinstance(body, dict):
            raise TypeError(f"{method} {path} did not answer a JSON object")
        return body

    async def login(self, username: str, password: str) -> str:
        """Sign in; the access token."""
        body = await self.json(
            "POST", "/api/v1/auth/login", json={"username": username, "password": password}
        )
        return str(body["access_token"])


def refusal(method: str, path: str, response: httpx.Response) -> ApiRefused:
    """The :class:`ApiRefused` for an error response (problem+json, or whatever came back)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    return ApiRefused(
        method=method,
        path=path,
        status=response.status_code,
        code=str(body.get("code") or f"http_{response.status_code}"),
        detail=str(body.get("detail") or body.get("title") or response.reason_phrase),
    )
