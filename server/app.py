"""The FastAPI application factory: composes identity, operations and the feature routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from device_policy.errors import DevicePolicyError
from records.errors import RecordsError
from server.admin.routes import router as admin_router
from server.consultations.routes import router as consultations_router
from server.db import session_scope
from server.devices.routes import router as devices_router
from server.errors import install_error_handlers
from server.identity.routes import router as identity_router
from server.openapi import install_openapi
from server.ops.middleware import RequestContextMiddleware
from server.ops.routes import router as ops_router
from server.records_wiring import records_router
from server.security.headers import SecurityHeadersMiddleware
from server.security.keys import ensure_signing_key
from server.security.limits import RequestLimitsMiddleware, SizeLimits
from server.services import Services
from server.settings import Settings
from server.signalling.routes import router as signalling_router
from server.web.routes import router as web_router


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the app for ``settings``; the database must already be migrated."""
    settings = settings or Settings()
    services = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with session_scope(services.engine) as session:
            ensure_signing_key(session=session, secret=settings.secret_key.get_secret_value().encode())
        services.keys.load()
        for start in services.extras.get("startup", []):
            await start()
        try:
            yield
        finally:
            for stop in reversed(services.extras.get("shutdown", [])):
                await stop()

    app = FastAPI(
        title="telemed",
        version="0.1.0",
        summary="Video consultations for prison healthcare",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app, library_errors=(DevicePolicyError, RecordsError))
    # Innermost first: limits, then headers (also on the limits' errors), then the request id.
    app.add_middleware(
        RequestLimitsMiddleware,
        limits=SizeLimits(
            max_header_bytes=settings.max_request_header_bytes,
            max_body_bytes=settings.max_request_body_bytes,
            max_document_bytes=settings.records_max_document_bytes,
        ),
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=services.metrics)
    app.include_router(ops_router)
    app.include_router(identity_router)
    app.include_router(consultations_router)
    app.include_router(devices_router)
    app.include_router(signalling_router)
    app.include_router(web_router)
    app.include_router(admin_router)
    app.include_router(records_router(services))
    install_openapi(app)
    return app
