"""The OpenAPI schema tells the truth about errors: every refusal a route can give is declared,
as ``application/problem+json`` with the :data:`PROBLEM_SCHEMA` body.

Routes may name the statuses only they give with ``responses=problem_responses(409, 423)``;
the statuses every route of a kind can give are added here once, from what the route
depends on (:func:`install_openapi`):

* a body → 400 ``malformed_body``, 413 ``payload_too_large``;
* a parameter or a body → 422 ``validation_error`` (FastAPI's own 422 schema is replaced);
* a path parameter → 404 ``not_found``;
* a credential of any kind (every route under ``/api/`` and ``/admin/api/``) → 401 and 403;
* a database session → 503 ``database_busy`` or ``database_unavailable`` (with ``Retry-After``);
* a POST, PUT, PATCH or DELETE → 409 (the current state refuses it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security.base import SecurityBase

from server.errors import PROBLEM_MEDIA_TYPE

__all__ = ["PROBLEM_SCHEMA", "install_openapi", "problem_responses"]

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; branch on `code` (docs/errors.md lists every code).",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "urn:telemed:problem:<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "For people; never a secret or patient data"},
        "code": {"type": "string", "description": "Stable snake_case code"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "additionalProperties": True,
}

_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}
_CODES = {
    400: "`malformed_body` (or a route's own code)",
    401: "`authentication_required`, `invalid_token`, `token_expired`…",
    403: "`access_denied` or a route's own refusal",
    404: "`not_found`",
    409: "`invalid_state`, `already_exists`…",
    413: "`payload_too_large`",
    422: "`validation_error` (`errors` lists where) or a route's own code",
    423: "`account_locked`",
    429: "`rate_limited`",
    503: "`database_busy`, `database_unavailable` or `service_unavailable`",
}


def problem_response(status: int) -> dict[str, Any]:
    """One problem+json response object for ``status``."""
    phrase = HTTPStatus(status).phrase
    codes = _CODES.get(status)
    response: dict[str, Any] = {
        "description": f"{phrase}: {codes}" if codes else phrase,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}},
    }
    if status in (423, 429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route decorator: the problem+json statuses only this route gives."""
    return {status: problem_response(status) for status in statuses}


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _has_path_params(dependant: Dependant) -> bool:
    return bool(dependant.path_params) or any(_has_path_params(d) for d in dependant.dependencies)


def _has_params(dependant: Dependant) -> bool:
    own = (dependant.path_params, dependant.query_params, dependant.header_params, dependant.cookie_params)
    return any(own) or any(_has_params(d) for d in dependant.dependencies)


def inferred_statuses(route: APIRoute) -> set[int]:
    """The error statuses a route can answer, from what it depends on."""
    # Imported here: server.deps imports the services, which import much of the app.
    from server.deps import get_principal, get_session

    calls = list(_calls(route.dependant))
    names = {getattr(c, "__qualname__", "") for c in calls}
    statuses: set[int] = set()
    has_body = route.body_field is not None or "requestBody" in (route.openapi_extra or {})
    if has_body:
        statuses |= {400, 413, 422}
    if _has_params(route.dependant):
        statuses.add(422)
    if _has_path_params(route.dependant):
        statuses.add(404)
    secured = any(isinstance(c, SecurityBase) for c in calls) or get_principal in calls
    # Every API route takes some credential (bearer, console cookie + CSRF, a token in the body,
    # a device signature) and refuses a bad one; only the operations endpoints take none.
    api = route.path_format.startswith(("/api/", "/admin/api/"))
    if secured or api or any("posture" in n or "compliant" in n for n in names):
        statuses |= {401, 403}
    if get_session in calls:
        statuses.add(503)
    if set(route.methods or ()) & {"POST", "PUT", "PATCH", "DELETE"}:
        statuses.add(409)
    return statuses


def _document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    # Included routers are kept nested; their contexts carry each route's full path.
    by_path = {
        (context.path_format, method.lower()): context.route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.route, APIRoute)
        for method in context.methods or ()
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            route = by_path.get((path, method))
            if route is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(inferred_statuses(route)):
                responses.setdefault(str(status), problem_response(status))
            for status, response in responses.items():
                # Every error the server gives is problem+json, whatever a route's own entry says.
                if status[:1] in ("4", "5"):
                    declared = problem_response(int(status))
                    response["content"] = declared["content"]
                    if "headers" in declared:
                        response.setdefault("headers", declared["headers"])
    schemas = schema["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the schema built by :func:`_document` (once, on first request) at ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
