"""What a console request must show: its origin, its session cookie, its CSRF token.

* **Origin.** Every unsafe request (POST, PUT, PATCH, DELETE) must carry an ``Origin``
  header equal to the server's public origin (``TELEMED_PUBLIC_URL``); anything else,
  or none, is ``403 csrf_refused``. Browsers set ``Origin`` themselves and pages cannot.
* **Session.** The cookie (``__Host-telemed_admin`` over https, ``telemed_admin`` over http)
  is HttpOnly, SameSite=Strict, Path=/, Secure over https, with no expiry (it goes when
  the browser closes); it holds a random token whose SHA-256 names the session row.
* **CSRF token.** Unsafe requests of a signed-in session also send ``X-CSRF-Token``: an
  HMAC of the session token (``GET /admin/api/session`` hands it to the page). A page on
  another site can neither read it nor set the header without a CORS preflight we refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from records.ports import Actor, RequestMeta
from server.admin import sessions
from server.admin.errors import CsrfRefused, SecondFactorRequired
from server.admin.events import Where, Who
from server.admin.models import AdminSession, SessionStage
from server.admin.secretbox import csrf_matches
from server.db import utcnow
from server.deps import ServicesDep, SessionDep
from server.errors import AccessDenied, AuthenticationRequired
from server.identity.models import Role, User
from server.services import Services
from server.settings import Settings

COOKIE_HTTP = "telemed_admin"
COOKIE_HTTPS = "__Host-telemed_admin"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_https(settings: Settings) -> bool:
    """Whether people reach the server over https (then the cookie is Secure and __Host-)."""
    return urlsplit(settings.public_url).scheme == "https"


def cookie_name(settings: Settings) -> str:
    """The session cookie's name for this deployment."""
    return COOKIE_HTTPS if is_https(settings) else COOKIE_HTTP


def public_origin(settings: Settings) -> str:
    """``scheme://host[:port]`` of the public URL, as browsers write ``Origin``."""
    parts = urlsplit(settings.public_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def session_policy(settings: Settings) -> sessions.SessionPolicy:
    """Idle timeout and lifetime of console sessions."""
    return sessions.SessionPolicy(idle=settings.admin_idle_timeout, lifetime=settings.admin_session_lifetime)


def server_secret(services: Services) -> bytes:
    """The key material the console derives its keys from."""
    return services.settings.secret_key.get_secret_value().encode()


def where(request: Request) -> Where:
    """The request's client address, user agent and request id."""
    return Where(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent") or None,
        request_id=getattr(request.state, "request_id", None),
    )


def check_origin(request: Request, services: ServicesDep) -> None:
    """Refuse an unsafe request whose Origin is not this server's."""
    if request.method not in UNSAFE_METHODS:
        return
    origin = (request.headers.get("origin") or "").lower().rstrip("/")
    if origin != public_origin(services.settings):
        raise CsrfRefused("Open the console from the server's own address; this request came from elsewhere")


OriginChecked = Annotated[None, Depends(check_origin)]


@dataclass(frozen=True)
class ConsoleSession:
    """A console session found from the cookie (any stage) and its user."""

    row: AdminSession
    user: User
    token: str
    where: Where

    @property
    def who(self) -> Who:
        return Who(user_id=self.user.id, establishment=self.user.establishment, session_id=self.row.id)


def get_console_session(
    request: Request, services: ServicesDep, session: SessionDep, _origin: OriginChecked
) -> ConsoleSession:
    """The session the cookie names, of any stage; unsafe requests must carry its CSRF token."""
    settings = services.settings
    token = request.cookies.get(cookie_name(settings))
    now = utcnow()
    row = sessions.find_session(session=session, token=token, policy=session_policy(settings), now=now)
    user = session.get(User, row.user_id)
    if user is None or user.disabled or user.role is not Role.ADMIN:
        sessions.end_session(session=session, row=row, reason="account", now=now)
        raise AuthenticationRequired("Sign in to the admin console")
    assert token is not None  # noqa: S101 - find_session refuses a missing token
    if request.method in UNSAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER, "")
        if not presented or not csrf_matches(server_secret(services), token, presented):
            raise CsrfRefused("The request is missing the console's CSRF token; reload the console")
    sessions.touch(session=session, row=row, now=now)
    return ConsoleSession(row=row, user=user, token=token, where=where(request))


AnySession = Annotated[ConsoleSession, Depends(get_console_session)]


@dataclass(frozen=True)
class ConsoleAdmin:
    """A fully signed-in admin (both factors), as services want them."""

    user: User
    row: AdminSession
    where: Where

    @property
    def who(self) -> Who:
        return Who(user_id=self.user.id, establishment=self.user.establishment, session_id=self.row.id)

    @property
    def actor(self) -> Actor:
        """The admin as the records library names an actor."""
        return Actor(user_id=self.user.id, role=Role.ADMIN.value, establishment=self.user.establishment)

    @property
    def meta(self) -> RequestMeta:
        """The request as the records library records it."""
        return RequestMeta(request_id=self.where.request_id, ip=self.where.ip)


def require_stage(console: ConsoleSession, *stages: SessionStage) -> None:
    """Refuse a session that is not in one of ``stages``."""
    if console.row.stage not in {s.value for s in stages}:
        if console.row.stage == SessionStage.ACTIVE.value:
            raise AccessDenied("You are already signed in")
        raise SecondFactorRequired("Finish signing in with your second factor first")


def get_console_admin(console: AnySession) -> ConsoleAdmin:
    """The admin behind an active session; a session still at its second step is refused."""
    require_stage(console, SessionStage.ACTIVE)
    return ConsoleAdmin(user=console.user, row=console.row, where=console.where)


AdminDep = Annotated[ConsoleAdmin, Depends(get_console_admin)]
