"""Health, readiness, metrics and the JWKS."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.db import ping
from server.deps import ServicesDep
from server.errors import ServiceUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> dict[str, Any]:
    """Readiness: the database (and Redis, when configured) answer."""
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(ping, services.engine)
        checks["database"] = "ok"
    except Exception as exc:
        raise ServiceUnavailable("The database is not reachable", checks={"database": "down"}) from exc
    for name, probe in services.extras.get("readiness_probes", {}).items():
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:
            raise ServiceUnavailable(f"{name} is not reachable", checks={**checks, name: "down"}) from exc
    return {"status": "ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/jwks.json")
def jwks(services: ServicesDep) -> dict[str, Any]:
    """The public keys that verify every token this server issues."""
    return services.keys.jwks()
