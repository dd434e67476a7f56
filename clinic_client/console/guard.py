"""Who may talk to the agent: its own origin, from the browser that redeemed the launch code.

Every request, HTTP or WebSocket, passes the :class:`Guard` first:

1. ``Host`` must be exactly ``127.0.0.1:PORT`` (a DNS-rebinding page sends its own name) → 421.
2. ``Origin``, when present, must be ``http://127.0.0.1:PORT``; unsafe methods and WebSocket
   upgrades must carry it (another local page, or a tab on another site) → 403.
3. The session cookie (``telemed_console``) must name the live session → 401 — except
   ``GET /launch/{code}``, which is how the browser gets that cookie, once.

It also puts the security headers on every response, and the CSP on HTML.
"""

from __future__ import annotations

import hmac
import html
import secrets
from http.cookies import SimpleCookie

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinic_client.console.errors import ConsoleError

COOKIE_NAME = "telemed_console"
LAUNCH_PREFIX = "/launch/"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self' blob:; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
SAFE_METHODS = frozenset({"GET", "HEAD"})
SHORTCUT_WORDS = "Open the console from the laptop's Telemed shortcut."


class Gate:
    """The launch code (good once) and the session cookie it turns into."""

    def __init__(
        self,
        port: int,
        *,
        launch_code: str | None = None,
        cookie_name: str = COOKIE_NAME,
        title: str = "Telemed console",
        words: str = SHORTCUT_WORDS,
    ) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.origin = f"http://{self.host}"
        # The room screen's agent uses the same gate with its own cookie and words.
        self.cookie_name = cookie_name
        self.title = title
        self.words = words
        self._code = launch_code or secrets.token_urlsafe(32)  # 256 bits
        self._code_used = False
        self._session: str | None = None

    @property
    def launch_url(self) -> str:
        """``http://127.0.0.1:PORT/launch/CODE`` (a secret until it is used)."""
        return f"{self.origin}{LAUNCH_PREFIX}{self._code}"

    def redeem(self, code: str) -> str:
        """Trade the launch code for a new session cookie value (once); 403 for a used or wrong code."""
        if not hmac.compare_digest(code.encode(), self._code.encode()):
            raise ConsoleError(403, "launch_code_invalid", f"This link is not valid. {self.words}")
        if self._code_used:
            raise ConsoleError(403, "launch_code_used", f"This link has been used already. {self.words}")
        self._code_used = True
        self._session = secrets.token_urlsafe(32)
        return self._session

    def new_launch_code(self) -> str:
        """A fresh one-time launch URL (a restarted browser); the session ends when it is redeemed."""
        self._code = secrets.token_urlsafe(32)
        self._code_used = False
        return self.launch_url

    def session_ok(self, cookie_header: str | None) -> bool:
        """True when the request's cookie names the live session."""
        if self._session is None or not cookie_header:
            return False
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:  # noqa: BLE001 - a malformed cookie is simply no session
            return False
        morsel = jar.get(self.cookie_name)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self._session.encode())

    def set_cookie_header(self, value: str) -> str:
        """The ``Set-Cookie`` value for the session (HttpOnly, SameSite=Strict, whole site)."""
        return f"{self.cookie_name}={value}; HttpOnly; SameSite=Strict; Path=/"


def html_page(status: int, title: str, words: str) -> HTMLResponse:
    """A small page for a browser that arrived without (or with a spent) launch link."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(words)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=status)


def refusal(scope: Scope, error: ConsoleError, *, title: str = "Telemed console") -> Response:
    """problem+json under /api, an HTML page elsewhere."""
    if str(scope.get("path", "")).startswith("/api"):
        return error.response()
    return html_page(error.status, "Wrong address" if error.status == 421 else title, error.detail)


class Guard:
    """ASGI middleware: the three checks of the module docstring, and the response headers."""

    def __init__(self, app: ASGIApp, *, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    def check(self, scope: Scope) -> ConsoleError | None:
        """The refusal for this request, or None when it may pass."""
        headers = Headers(scope=scope)
        if headers.get("host") != self.gate.host:
            return ConsoleError(421, "wrong_host", "This address is not the console's.")
        origin = headers.get("origin")
        method = "WEBSOCKET" if scope["type"] == "websocket" else str(scope.get("method", "GET"))
        if origin is not None and origin != self.gate.origin:
            return ConsoleError(403, "wrong_origin", "Requests from other pages are refused.")
        if origin is None and method not in SAFE_METHODS:
            return ConsoleError(403, "wrong_origin", "Requests from other pages are refused.")
        path = str(scope.get("path", ""))
        if method == "GET" and path.startswith(LAUNCH_PREFIX):
            return None
        if not self.gate.session_ok(headers.get("cookie")):
            return ConsoleError(401, "no_session", self.gate.words)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        error = self.check(scope)
        if scope["type"] == "websocket":
            if error is not None:
                # Closing before accepting makes the server answer the upgrade with 403.
                await send({"type": "websocket.close", "code": 1008, "reason": error.code})
                return
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        if error is not None:
            await refusal(scope, error, title=self.gate.title)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers[name] = value
            if headers.get("content-type", "").startswith("text/html"):
                headers["Content-Security-Policy"] = CSP
        await send(message)

    return sending
