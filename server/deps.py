"""Route dependencies as ``Annotated`` aliases, so a signature states what it requires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from device_policy.errors import InvalidPostureToken, InvalidRequestProof
from server.audit import RequestOrigin, bind_request_origin
from server.db import request_slot
from server.devices.posture import PostureContext, verify_posture
from server.errors import AccessDenied, AuthenticationRequired, InvalidToken
from server.identity.models import Role, User
from server.identity.service import ACCESS_AUDIENCE, is_revoked
from server.services import Services


def get_services(request: Request) -> Services:
    """The app's wired services."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def is_refusal(exc: BaseException) -> bool:
    """A deliberate refusal (4xx with a stable code), as opposed to a failure."""
    status = getattr(exc, "status", None)
    return isinstance(getattr(exc, "code", None), str) and isinstance(status, int) and 400 <= status < 500


def _finish(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def get_session(request: Request, services: ServicesDep) -> AsyncIterator[Session]:
    """A database session for one request, opened once the request holds a slot of the database.

    Committed on success, and also on a refusal: a refusal is an audit event, and services
    refuse before they change anything, so what a refusal commits is its own trace. Any
    other error rolls everything back. Waiting for a slot (``server.db.RequestGate``) holds
    no thread and no connection; a request that waits too long is answered 503 ``database_busy``.
    """
    async with request_slot(services.engine):
        session = Session(services.engine, expire_on_commit=False)
        # Audit events recorded through this session say which request, from where.
        bind_request_origin(
            session,
            RequestOrigin(
                request_id=getattr(request.state, "request_id", None),
                ip=request.client.host if request.client else None,
            ),
        )
        try:
            yield session
        except BaseException as exc:
            # Shielded: a cancelled request must still give its connection back.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(partial(_finish, session, commit=is_refusal(exc)))
            raise
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(partial(_finish, session, commit=True))


# scope="function": commit before the response is sent, so a client told "created" can read it at once.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/login")


@dataclass(frozen=True)
class Principal:
    """The signed-in user and the claims of the access token they presented."""

    user: User
    claims: dict[str, Any]

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(int(self.claims["exp"]), UTC)


def get_principal(
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Verify the bearer access token; refuse revoked tokens and disabled users."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationRequired("Send an access token as 'Authorization: Bearer …'")
    claims = services.jwt.verify(credentials.credentials, audience=ACCESS_AUDIENCE)
    if is_revoked(session=session, jti=claims["jti"]):
        raise InvalidToken("The token has been revoked")
    user = session.get(User, claims["sub"])
    if user is None or user.disabled:
        raise InvalidToken("The token's user is not active")
    return Principal(user=user, claims=claims)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_current_user(principal: CurrentPrincipal) -> User:
    """The signed-in user."""
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role) -> Any:
    """A dependency that lets only the given roles through."""

    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise AccessDenied(f"This needs the role {' or '.join(r.value for r in roles)}")
        return user

    return Depends(check)


AdminUser = Annotated[User, require_roles(Role.ADMIN)]
ClinicianUser = Annotated[User, require_roles(Role.CLINICIAN)]
StaffUser = Annotated[User, require_roles(Role.CLINICIAN, Role.ADMIN)]


def get_compliant_device(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    posture_token: Annotated[
        str | None, Header(alias="X-Posture-Token", description="Posture token from /attest")
    ] = None,
    posture_proof: Annotated[
        str | None, Header(alias="X-Posture-Proof", description="Request proof signed by the device key")
    ] = None,
) -> PostureContext:
    """Verify the posture token and the device-key proof for this very request."""
    if not posture_token:
        raise InvalidPostureToken("Send a posture token in the X-Posture-Token header")
    if not posture_proof:
        raise InvalidRequestProof("Send a request proof in the X-Posture-Proof header")
    return verify_posture(
        services=services,
        session=session,
        token=posture_token,
        proof=posture_proof,
        method=request.method,
        url=str(request.url),
    )


CompliantDevice = Annotated[PostureContext, Depends(get_compliant_device)]
