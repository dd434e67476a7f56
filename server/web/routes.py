"""``GET /join`` (the specialist's page) and its two assets, with a strict Content-Security-Policy.

The invite token travels in the URL fragment (``/join#<token>``), which browsers never send,
so nothing here ever sees it. Files are read once from the package and served from memory;
only the three names below can be requested, so no path from a request reaches the disk.
The only thing filled in per deployment is the help contact (``TELEMED_SUPPORT_CONTACT``,
``TELEMED_SUPPORT_PHONE``), HTML-escaped into two ``<meta>`` elements that the script reads
as text — the CSP allows no inline script to carry it.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib import resources
from urllib.parse import urlsplit

from fastapi import APIRouter, Response

from server.deps import ServicesDep
from server.errors import NotFound
from server.settings import Settings

router = APIRouter(tags=["web"], include_in_schema=False)

ASSET_PREFIX = "/join/assets"
_ASSETS: dict[str, str] = {
    "join.js": "text/javascript; charset=utf-8",
    "join.css": "text/css; charset=utf-8",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("server.web").joinpath("static", name).read_bytes()


# The placeholders in join.html that carry the deployment's help contact to the script.
SUPPORT_META = {
    "contact": '<meta name="telemed-support-contact" content="">',
    "phone": '<meta name="telemed-support-phone" content="">',
}


def render_page(settings: Settings) -> bytes:
    """join.html with the configured help contact in its two ``<meta>`` elements (escaped)."""
    html = _read("join.html").decode("utf-8")
    values = {"contact": settings.support_contact, "phone": settings.support_phone}
    for key, placeholder in SUPPORT_META.items():
        value = values[key]
        if value:
            html = html.replace(placeholder, placeholder.replace('content=""', f'content="{escape(value)}"'))
    return html.encode("utf-8")


def websocket_origin(public_url: str) -> str:
    """The ws:// or wss:// origin matching the server's public http(s) URL."""
    parts = urlsplit(public_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}"


def content_security_policy(public_url: str) -> str:
    """The page's CSP: own scripts and styles only, no inline code, sockets to this server only."""
    # 'self' covers same-origin ws(s):// in CSP3 browsers; the explicit origin is for older ones.
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src 'self'",
            f"connect-src 'self' {websocket_origin(public_url)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        ]
    )


def security_headers(public_url: str) -> dict[str, str]:
    """Headers on the page and its assets: no caching, no referrer, no framing, camera for us only."""
    return {
        "Content-Security-Policy": content_security_policy(public_url),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()",
    }


@router.get("/join")
def join_page(services: ServicesDep) -> Response:
    """The specialist's page; the invite token is in the URL fragment, which the browser never sends."""
    return Response(
        render_page(services.settings),
        media_type="text/html; charset=utf-8",
        headers=security_headers(services.settings.public_url),
    )


@router.get(ASSET_PREFIX + "/{name}")
def join_asset(name: str, services: ServicesDep) -> Response:
    """The page's script or style sheet."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound("No such file")
    return Response(
        _read(name), media_type=media_type, headers=security_headers(services.settings.public_url)
    )
