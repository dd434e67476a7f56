"""The console's HTTP surface: the page, its assets and the JSON API under ``/admin/api``."""

from __future__ import annotations

from fastapi import APIRouter

from server.admin.routes import audit, estate, overview, page, reviews, session

__all__ = ["router"]

router = APIRouter()
for part in (page, session, overview, audit, reviews, estate):
    router.include_router(part.router)
