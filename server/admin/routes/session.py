"""Signing in and out of the console, the second step, and enrolling a second factor."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from server.admin import sessions, signin, totp
from server.admin.deps import (
    AnySession,
    OriginChecked,
    cookie_name,
    require_stage,
    server_secret,
    session_policy,
    where,
)
from server.admin.events import record_admin
from server.admin.models import SessionStage
from server.admin.routes.common import session_out, set_cookie
from server.admin.routes.headers import AdminRoute, clear_cookie
from server.admin.schemas import (
    EnrolConfirm,
    EnrolledOut,
    EnrolmentOut,
    SecondFactorRequest,
    SessionOut,
    SignInRequest,
)
from server.db import utcnow
from server.deps import ServicesDep, SessionDep

router = APIRouter(prefix="/admin/api", tags=["admin"], route_class=AdminRoute)

QR_PATH = "/admin/api/enrolment/qr.svg"


@router.post("/session", response_model=SessionOut)
def sign_in(
    body: SignInRequest,
    request: Request,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
    _origin: OriginChecked,
) -> SessionOut:
    """Password step: opens a session that still needs its second factor (or enrolment)."""
    now = utcnow()
    came_from = where(request)
    accepted = signin.check_password(
        session=session,
        policy=services.login_policy,
        throttle=services.login_throttle,
        username=body.username,
        password=body.password,
        where=came_from,
        now=now,
    )
    previous = request.cookies.get(cookie_name(services.settings))
    if previous:
        # Signing in again from this browser ends whatever session its cookie held.
        sessions.end_by_token(session=session, token=previous, reason="replaced", now=now)
    opened = sessions.open_session(
        session=session,
        user_id=accepted.user.id,
        stage=accepted.stage,
        now=now,
        ip=came_from.ip,
        user_agent=came_from.user_agent,
    )
    set_cookie(response, services, opened.token)
    return session_out(
        session=session, services=services, row=opened.row, user=accepted.user, token=opened.token
    )


@router.get("/session", response_model=SessionOut)
def current_session(console: AnySession, services: ServicesDep, session: SessionDep) -> SessionOut:
    """Where this browser's session stands (and its CSRF token); counts as activity."""
    return session_out(
        session=session, services=services, row=console.row, user=console.user, token=console.token
    )


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def sign_out(console: AnySession, services: ServicesDep, session: SessionDep) -> Response:
    """Sign out: the session ends now and the cookie is cleared."""
    sessions.end_session(session=session, row=console.row, reason="signed_out", now=utcnow())
    record_admin(
        session=session, action="admin.sign_out", outcome="success", who=console.who, where=console.where
    )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_cookie(response, services)
    return response


@router.post("/session/second-factor", response_model=SessionOut)
def second_factor(
    body: SecondFactorRequest,
    console: AnySession,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
) -> SessionOut:
    """Second step: a TOTP code (each code once) or an unused recovery code; the console opens."""
    require_stage(console, SessionStage.SECOND_FACTOR)
    now = utcnow()
    signin.check_second_factor(
        session=session,
        policy=services.login_policy,
        throttle=services.login_throttle,
        server_secret=server_secret(services),
        row=console.row,
        code=body.code,
        recovery_code=body.recovery_code,
        where=console.where,
        now=now,
    )
    opened = sessions.advance(
        session=session,
        row=console.row,
        stage=SessionStage.ACTIVE,
        policy=session_policy(services.settings),
        now=now,
    )
    set_cookie(response, services, opened.token)
    return session_out(
        session=session, services=services, row=opened.row, user=console.user, token=opened.token
    )


def _enrolment(console: AnySession, services: ServicesDep, session: SessionDep) -> tuple[str, str]:
    require_stage(console, SessionStage.ENROL)
    secret = signin.pending_secret(session=session, server_secret=server_secret(services), row=console.row)
    uri = totp.provisioning_uri(secret, account=console.user.username, issuer=services.settings.issuer)
    return secret, uri


@router.get("/enrolment", response_model=EnrolmentOut)
def enrolment(console: AnySession, services: ServicesDep, session: SessionDep) -> EnrolmentOut:
    """The TOTP secret offered to this admin (the same one until confirmed), and its QR code's URL."""
    secret, uri = _enrolment(console, services, session)
    return EnrolmentOut(
        secret=secret,
        otpauth_uri=uri,
        qr_svg_url=QR_PATH,
        issuer=services.settings.issuer,
        account=console.user.username,
        digits=totp.DIGITS,
        period_s=totp.PERIOD_S,
        algorithm=totp.ALGORITHM,
    )


@router.get("/enrolment/qr.svg", response_class=Response)
def enrolment_qr(console: AnySession, services: ServicesDep, session: SessionDep) -> Response:
    """The offered secret as a QR code (SVG) for the authenticator app to scan."""
    _secret, uri = _enrolment(console, services, session)
    svg = totp.qr_svg(uri, title="QR code for your authenticator app")
    return Response(svg, media_type="image/svg+xml")


@router.post("/enrolment", response_model=EnrolledOut)
def confirm_enrolment(
    body: EnrolConfirm, console: AnySession, response: Response, services: ServicesDep, session: SessionDep
) -> EnrolledOut:
    """Confirm the app shows the right codes: the factor is kept, recovery codes shown once, console opens."""
    require_stage(console, SessionStage.ENROL)
    now = utcnow()
    codes = signin.confirm_enrolment(
        session=session,
        server_secret=server_secret(services),
        row=console.row,
        code=body.code,
        where=console.where,
        now=now,
    )
    opened = sessions.advance(
        session=session,
        row=console.row,
        stage=SessionStage.ACTIVE,
        policy=session_policy(services.settings),
        now=now,
    )
    set_cookie(response, services, opened.token)
    out = session_out(
        session=session, services=services, row=opened.row, user=console.user, token=opened.token
    )
    return EnrolledOut(session=out, recovery_codes=codes)
