"""Security headers on every HTTP response, and ``Cache-Control: no-store`` on the API.

Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and, unless the route set its own (the ``/join`` page and
the admin console set stricter page policies), ``Content-Security-Policy: default-src 'none';
frame-ancestors 'none'`` — JSON needs nothing a browser could load or run. Responses under
``/api/`` and ``/admin/api/`` carry tokens or patient data, so they are never stored by a
browser or proxy: ``Cache-Control: no-store`` (a route's own ``no-store`` variant is kept).
Errors written by the middleware in front of the routes get the same headers.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'"
ALWAYS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
NO_STORE_PREFIXES = ("/api/", "/admin/api/")


class SecurityHeadersMiddleware:
    """Add the security headers to each response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope["path"].startswith(NO_STORE_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = API_CSP
                if no_store and "no-store" not in headers.get("cache-control", ""):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
