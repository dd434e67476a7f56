"""The agent's web app: the guard around the page, its static files, its JSON API and bridge."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from clinic_client.console import api
from clinic_client.console.errors import ConsoleError
from clinic_client.console.guard import Gate, Guard, html_page, refusal
from clinic_client.console.session import ConsoleAgent

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def _content_type(path: Path) -> str:
    return (
        CONTENT_TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or "application/octet-stream"
    )


def static_file(root: Path, path: str) -> Response:
    """The file at ``path`` under ``root`` with its content type; 404 for anything else."""
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise ConsoleError(404, "not_found", "Not found.")
    return FileResponse(target, media_type=_content_type(target))


def agent_app(
    gate: Gate,
    *,
    static_dir: Path,
    page: str,
    on_shutdown: Callable[[], Awaitable[None]],
    on_startup: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """An agent's app behind ``gate``: refusals as problems or pages, the launch route, the page
    ``page`` at ``/`` and its files under ``/assets`` (the console's, and the room screen's)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        yield
        await on_shutdown()

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.gate = gate
    root = static_dir.resolve()

    async def on_console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)  # noqa: S101 - registered for it
        return refusal(request.scope, exc, title=gate.title)

    async def on_validation(request: Request, exc: Exception) -> Response:
        # Never echo the input: it may be a password or patient data.
        error = ConsoleError(422, "invalid_request", "Some of the fields are missing or not valid.")
        return refusal(request.scope, error, title=gate.title)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it
        codes = {404: ("not_found", "Not found."), 405: ("method_not_allowed", "Not allowed.")}
        code, words = codes.get(exc.status_code, (f"http_{exc.status_code}", "The request was refused."))
        return refusal(request.scope, ConsoleError(exc.status_code, code, words), title=gate.title)

    app.add_exception_handler(ConsoleError, on_console_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)

    @app.get("/launch/{code}", include_in_schema=False)
    def launch(code: str) -> Response:
        """Trade the one-time launch code for the session cookie; then the page."""
        try:
            session = gate.redeem(code)
        except ConsoleError as exc:
            return html_page(exc.status, gate.title, exc.detail)
        response = RedirectResponse("/", status_code=303)
        response.headers["Set-Cookie"] = gate.set_cookie_header(session)
        return response

    @app.get("/", include_in_schema=False)
    def the_page() -> Response:
        """The page."""
        if not (root / page).is_file():
            raise ConsoleError(404, "not_found", "The page is not installed.")
        return FileResponse(root / page, media_type=CONTENT_TYPES[".html"])

    @app.get("/assets/{path:path}", include_in_schema=False)
    def asset(path: str) -> Response:
        """A static file of the page (scripts, styles, pdf.js)."""
        return static_file(root, path)

    app.add_middleware(Guard, gate=gate)
    return app


def create_console_app(agent: ConsoleAgent, gate: Gate, *, static_dir: Path = STATIC_DIR) -> FastAPI:
    """The agent's app for ``gate`` (port, launch code) serving ``agent``; files from ``static_dir``."""
    app = agent_app(gate, static_dir=static_dir, page="console.html", on_shutdown=agent.aclose)
    app.state.agent = agent
    app.include_router(api.router)
    return app
