"""Security headers on every console response, errors included.

The headers are the specialist page's (``server.web.routes.security_headers``: a strict CSP
with Trusted Types, no-store, no framing, no referrer), with the camera and microphone
turned off: the console never uses them. Routes are built with :class:`AdminRoute`, which
also turns errors into problem+json *inside* the route (through the app's own handlers)
so that they carry the same headers — and a refused session clears its cookie.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from server.admin.deps import cookie_name, is_https
from server.services import Services
from server.web.routes import security_headers

PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
_CLEARS_COOKIE = frozenset({"authentication_required", "session_expired"})


def admin_headers(public_url: str) -> dict[str, str]:
    """The headers of every console response."""
    return {**security_headers(public_url), "Permissions-Policy": PERMISSIONS}


def clear_cookie(response: Response, services: Services) -> None:
    """Tell the browser to drop the session cookie."""
    response.delete_cookie(
        cookie_name(services.settings),
        path="/",
        secure=is_https(services.settings),
        httponly=True,
        samesite="strict",
    )


async def _handled(request: Request, exc: Exception) -> Response:
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            response: Response = await handler(request, exc)
            return response
    raise exc


class AdminRoute(APIRoute):
    """A route whose every response, success or error, carries the console's headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            services: Services = request.app.state.services
            try:
                response = await handler(request)
            except Exception as exc:
                response = await _handled(request, exc)
                if getattr(exc, "code", None) in _CLEARS_COOKIE:
                    clear_cookie(response, services)
            response.headers.update(admin_headers(services.settings.public_url))
            return response

        return guarded
