"""The server's error tree, and the one handler that turns errors into problem+json.

Errors are grouped by what the caller can do about them::

    TelemedError                       500 internal_error
    ├── BadRequest                     400 bad_request
    │   ├── MalformedBody              400 malformed_body
    │   └── ValidationFailed           422 validation_error
    ├── AuthenticationRequired         401 authentication_required
    │   ├── InvalidCredentials         401 invalid_credentials
    │   ├── InvalidToken               401 invalid_token
    │   └── RefreshTokenReused         401 refresh_token_reused
    ├── AccessDenied                   403 access_denied
    │   └── PolicyFailed               403 policy_failed
    ├── NotFound                       404 not_found
    ├── Conflict                       409 conflict
    │   ├── AlreadyExists              409 already_exists
    │   └── InvalidState               409 invalid_state
    ├── AccountLocked                  423 account_locked
    ├── RateLimited                    429 rate_limited
    └── ServiceUnavailable             503 service_unavailable
        ├── DatabaseBusy               503 database_busy
        └── DatabaseUnavailable        503 database_unavailable

Libraries (``records``, ``device_policy``) keep their own error classes with the same
``code``/``status``/``title`` attributes; the server registers their bases with the same
handler, so every error on the wire is ``application/problem+json`` (RFC 9457) with a
stable ``code``. Services raise these, never ``HTTPException``. Messages never carry a
secret, a token or patient data.

A database that cannot be reached (down, restarting, refusing connections) is not a bug:
the driver's error answers ``503 database_unavailable`` with ``Retry-After`` (see
:func:`is_database_unavailable`), and the pool reconnects by itself once it is back.

A bug (any other exception) answers ``500 internal_error`` and the connection stays usable:
:class:`UnhandledErrorMiddleware` answers it inside the app, so the server never sees the
exception and never drops the keep-alive connection the next request would have used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("telemed.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class TelemedError(Exception):
    """Base of every error the server reports to a caller."""

    code = "internal_error"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class BadRequest(TelemedError):
    code, status, title = "bad_request", 400, "Bad request"


class MalformedBody(BadRequest):
    code, title = "malformed_body", "The request body cannot be parsed"


class ValidationFailed(BadRequest):
    code, status, title = "validation_error", 422, "The request is not valid"


class AuthenticationRequired(TelemedError):
    code, status, title = "authentication_required", 401, "Authentication required"


class InvalidCredentials(AuthenticationRequired):
    code, title = "invalid_credentials", "Wrong username or password"


class InvalidToken(AuthenticationRequired):
    code, title = "invalid_token", "The token is not valid"


class RefreshTokenReused(AuthenticationRequired):
    code, title = "refresh_token_reused", "Refresh token reused; the session has been revoked"


class AccessDenied(TelemedError):
    code, status, title = "access_denied", 403, "Access denied"


class PolicyFailed(AccessDenied):
    code, title = "policy_failed", "The device does not meet the policy"


class NotFound(TelemedError):
    code, status, title = "not_found", 404, "Not found"


class Conflict(TelemedError):
    code, status, title = "conflict", 409, "Conflict"


class AlreadyExists(Conflict):
    code, title = "already_exists", "Already exists"


class InvalidState(Conflict):
    code, title = "invalid_state", "Not allowed in the current state"

    def __init__(self, detail: str, *, state: str, **extra: Any) -> None:
        super().__init__(detail, state=state, **extra)
        self.state = state


class AccountLocked(TelemedError):
    code, status, title = "account_locked", 423, "Account temporarily locked"


class RateLimited(TelemedError):
    code, status, title = "rate_limited", 429, "Too many requests"


class ServiceUnavailable(TelemedError):
    code, status, title = "service_unavailable", 503, "A service the server needs is unavailable"


class DatabaseBusy(ServiceUnavailable):
    code, title = "database_busy", "The database is busy; retry shortly"


class DatabaseUnavailable(ServiceUnavailable):
    code, title = "database_unavailable", "The database is unavailable; retry shortly"


#: seconds a client is told to wait (``Retry-After``) when the database is busy
DATABASE_BUSY_RETRY_AFTER_S = 1
#: seconds a client is told to wait (``Retry-After``) when the database cannot be reached
DATABASE_UNAVAILABLE_RETRY_AFTER_S = 5


def is_database_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` says the database cannot be reached now, as opposed to a bug in a query.

    PostgreSQL's "operational" errors (psycopg ``OperationalError``: connection refused or
    lost, the server shutting down or starting up, too many connections) and any error on
    which SQLAlchemy invalidated the connection. SQLite's own ``OperationalError`` is not
    one: it also means "no such table", which is a bug.
    """
    if not isinstance(exc, DBAPIError):
        return False
    return bool(exc.connection_invalidated) or isinstance(exc.orig, psycopg.OperationalError)


def database_unavailable() -> DatabaseUnavailable:
    """The error a request gets while the database cannot be reached."""
    return DatabaseUnavailable(
        "The database cannot be reached; retry shortly", retry_after_s=DATABASE_UNAVAILABLE_RETRY_AFTER_S
    )


#: Framework statuses (routing, security helpers, body parsing) and the codes they answer with.
HTTP_STATUS_CODES = {
    400: "malformed_body",
    401: "authentication_required",
    403: "access_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
}


def problem_body(
    *, code: str, status: int, title: str, detail: str, request: Request | None, **extra: Any
) -> dict[str, Any]:
    """Build an RFC 9457 problem document with our stable ``code``."""
    body: dict[str, Any] = {
        "type": f"urn:telemed:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        # The route's template, never the concrete path: paths carry prison numbers, patient
        # ids and (pasted by mistake) tokens, and an error must not echo them. No route, no
        # instance.
        template = getattr(request.scope.get("route"), "path_format", None)
        if isinstance(template, str):
            body["instance"] = template
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if k not in body})
    return body


def problem_response(request: Request | None, exc: Exception) -> JSONResponse:
    """Turn any error carrying ``code``/``status``/``title`` into a problem+json response."""
    code = getattr(exc, "code", "internal_error")
    status = int(getattr(exc, "status", 500))
    title = getattr(exc, "title", "Internal error")
    detail = getattr(exc, "detail", None) or str(exc) or title
    extra = dict(getattr(exc, "extra", {}) or {})
    headers = {}
    retry_after = extra.pop("retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
        extra["retry_after_s"] = int(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body = problem_body(code=code, status=status, title=title, detail=detail, request=request, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Never echo the rejected input: it may be a password or patient data.
    return [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI, library_errors: Iterable[type[Exception]] = ()) -> None:
    """Map the error tree, library errors and framework errors to problem+json."""

    async def on_telemed_error(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            # Not a rule broken by a field: the body is not JSON at all.
            return problem_response(request, MalformedBody("The request body is not valid JSON"))
        err = ValidationFailed("The request body or parameters are not valid", errors=errors)
        return problem_response(request, err)

    async def on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
        # Every connection stayed busy for the pool's whole timeout: overload, not a bug.
        log.warning("database pool exhausted", extra={"error_type": type(exc).__name__})
        busy = DatabaseBusy(
            "Every database connection is busy; retry shortly", retry_after_s=DATABASE_BUSY_RETRY_AFTER_S
        )
        return problem_response(request, busy)

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        if not is_database_unavailable(exc):
            return await on_unexpected(request, exc)
        # An outage, not a bug: no stack trace per request, the pool reconnects when it is back.
        log.warning(
            "database unavailable",
            extra={"error_type": type(getattr(exc, "orig", None) or exc).__name__},
        )
        return problem_response(request, database_unavailable())

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it
        code = HTTP_STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        body = problem_body(
            code=code,
            status=exc.status_code,
            title=str(exc.detail),
            detail=str(exc.detail),
            request=request,
        )
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_MEDIA_TYPE)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this outside the request middleware, whose request id is gone by now.
        request_id = getattr(request.state, "request_id", None)
        log.exception("unhandled error", extra={"error_type": type(exc).__name__, "request_id": request_id})
        response = problem_response(request, TelemedError("An unexpected error occurred"))
        if request_id:
            response.headers["X-Request-ID"] = request_id
        return response

    app.add_exception_handler(TelemedError, on_telemed_error)
    for base in library_errors:
        app.add_exception_handler(base, on_telemed_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(PoolTimeout, on_pool_timeout)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
    # Added before any other middleware, so it sits innermost: inside the request id.
    app.add_middleware(UnhandledErrorMiddleware)


class UnhandledErrorMiddleware:
    """Answer a bug with a 500 problem document here, instead of letting it reach the server.

    Starlette's outermost error handler re-raises after answering, and uvicorn then closes
    the connection, so a client reusing it saw its *next* request fail. Caught here, the
    500 is an ordinary response and the connection stays open.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise  # half a response is out: only closing the connection tells the client
            request = Request(scope)
            request_id = getattr(request.state, "request_id", None)
            log.exception(
                "unhandled error", extra={"error_type": type(exc).__name__, "request_id": request_id}
            )
            response = problem_response(request, TelemedError("An unexpected error occurred"))
            await response(scope, receive, send)
