"""The agent's HTTP client for the telemed server: JSON in, the server's problem codes out."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from clinic_client.console.errors import ConsoleError, unreachable

log = logging.getLogger("telemed.console.server")

DEFAULT_TIMEOUT_S = 30.0
# Fields of a server problem the page may see; anything else (validation input echoes,
# request ids) stays in the agent.
_PASSED_EXTRAS = ("retry_after_s", "state")


class ServerApi:
    """Calls one telemed server; a refusal becomes a :class:`ConsoleError` with the server's code."""

    def __init__(
        self, server_url: str, *, http: httpx.AsyncClient | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)

    def url(self, path: str) -> str:
        """The absolute URL of an API path (what request proofs are signed over)."""
        return f"{self.server_url}{path}"

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_http:
            await self.http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        bearer: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Make a request; the response when it succeeded, else raise the server's refusal."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if bearer is not None:
            all_headers["Authorization"] = f"Bearer {bearer}"
        try:
            response = await self.http.request(method, self.url(path), headers=all_headers, **kwargs)
        except httpx.TransportError as exc:
            log.warning("server unreachable: %s %s (%s)", method, path.split("?")[0], type(exc).__name__)
            raise unreachable() from None
        if response.is_success:
            return response
        raise refusal(response)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Make a request and return its JSON body."""
        response = await self.send(method, path, **kwargs)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise unreachable(502) from None


def refusal(response: httpx.Response) -> ConsoleError:
    """The :class:`ConsoleError` for a server's error answer (its code, status and words)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        log.warning("server answered %s without a problem document", response.status_code)
        return unreachable(502)
    detail = str(body.get("detail") or body.get("title") or "The server refused the request.")
    extra = {k: body[k] for k in _PASSED_EXTRAS if k in body}
    return ConsoleError(
        response.status_code, str(body["code"]), detail, title=str(body.get("title") or detail), **extra
    )
