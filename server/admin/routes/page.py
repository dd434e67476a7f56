"""``GET /admin`` (the console page) and its static files, read once from the package."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

from server.admin.routes.headers import AdminRoute
from server.errors import NotFound

router = APIRouter(tags=["admin"], include_in_schema=False, route_class=AdminRoute)

ASSET_PREFIX = "/admin/assets"
_TYPES = {".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_NAME = re.compile(r"^[a-z][a-z0-9-]*\.(mjs|css)$")


@cache
def _files() -> frozenset[str]:
    # The names that exist, listed once: a request names one of them or gets 404, so no
    # text from a request ever reaches a path on disk.
    static = resources.files("server.admin").joinpath("static")
    return frozenset(p.name for p in static.iterdir() if _NAME.match(p.name))


@cache
def _read(name: str) -> bytes:
    return resources.files("server.admin").joinpath("static", name).read_bytes()


@router.get("/admin")
@router.get("/admin/")
def admin_page() -> Response:
    """The admin console (one page; the script shows one screen at a time)."""
    return Response(_read("admin.html"), media_type="text/html; charset=utf-8")


@router.get(ASSET_PREFIX + "/{name}")
def admin_asset(name: str) -> Response:
    """One of the console's scripts (ES modules) or its style sheet."""
    if name not in _files():
        raise NotFound("No such file")
    suffix = name[name.rindex(".") :]
    return Response(_read(name), media_type=_TYPES[suffix])
