"""Request size limits at the edge: header bytes (431) and body bytes (413), before a route reads.

* Headers: the total of every header name and value (``TELEMED_MAX_REQUEST_HEADER_BYTES``)
  is checked before the app sees the request; over it the answer is ``431
  request_headers_too_large``. ``telemed serve`` also caps what uvicorn's HTTP parser buffers
  (see :func:`uvicorn_limits`), so a huge header is refused before it is even parsed.
* Bodies: ``TELEMED_MAX_REQUEST_BODY_BYTES`` for every route, except document import, whose
  limit is ``TELEMED_RECORDS_MAX_DOCUMENT_BYTES``. A declared ``Content-Length`` over the limit
  is refused at once, unread; a body without one (chunked) is counted as it streams and
  refused as soon as it passes the limit. Either way the answer is ``413 payload_too_large``
  with ``max_bytes``. Document import counts its own stream (it refuses with
  ``document_too_large`` and audits the failed upload), so only its declared length is
  checked here.

Frameworks turn an error raised while a body is read into their own 400, so the body
counter remembers that it refused and the response is replaced by the 413 on its way out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import TelemedError, problem_response

# POST /api/v1/records/patients/{patient_id}/documents (records.router.import_document).
DOCUMENT_IMPORT = re.compile(r"^/api/v1/records/patients/[^/]+/documents/?$")
# Room for the request line (method, path, query) on top of the headers, for uvicorn's parser.
REQUEST_LINE_ALLOWANCE = 8192


class PayloadTooLarge(TelemedError):
    code, status, title = "payload_too_large", 413, "The request body is too large"


class RequestHeadersTooLarge(TelemedError):
    code, status, title = "request_headers_too_large", 431, "The request headers are too large"


@dataclass(frozen=True)
class SizeLimits:
    """The byte limits the middleware applies."""

    max_header_bytes: int
    max_body_bytes: int
    max_document_bytes: int


def uvicorn_limits(max_header_bytes: int) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that bound what its HTTP parser buffers."""
    # h11, not httptools: only h11 has a buffer limit (httptools takes headers of any size).
    return {"http": "h11", "h11_max_incomplete_event_size": max_header_bytes + REQUEST_LINE_ALLOWANCE}


def header_bytes(scope: Scope) -> int:
    """The total size of the request's header names and values."""
    return sum(len(name) + len(value) for name, value in scope.get("headers") or ())


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestLimitsMiddleware:
    """Refuse requests whose headers or body are larger than the limits, before a route reads them."""

    def __init__(self, app: ASGIApp, *, limits: SizeLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if header_bytes(scope) > self.limits.max_header_bytes:
            error = RequestHeadersTooLarge(
                f"The request headers are larger than the {self.limits.max_header_bytes} bytes accepted",
                max_bytes=self.limits.max_header_bytes,
            )
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1009})
                return
            await problem_response(Request(scope), error)(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        document = bool(DOCUMENT_IMPORT.match(scope["path"]))
        limit = self.limits.max_document_bytes if document else self.limits.max_body_bytes
        too_large = PayloadTooLarge(
            f"The request body is larger than the {limit} bytes accepted here", max_bytes=limit
        )
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await problem_response(Request(scope), too_large)(scope, receive, send)
            return
        if document:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit=limit, too_large=too_large)

    async def _counted(
        self, scope: Scope, receive: Receive, send: Send, *, limit: int, too_large: PayloadTooLarge
    ) -> None:
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise too_large
            return message

        async def replacing_send(message: Message) -> None:
            nonlocal started
            if refused:
                # The app answered the error raised in receive (often as its own 400): say 413.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await problem_response(Request(scope), too_large)(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, replacing_send)
        except PayloadTooLarge:
            if started:
                raise
            await problem_response(Request(scope), too_large)(scope, receive, send)
