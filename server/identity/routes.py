"""HTTP API for sign-in, tokens and user administration."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from server.admin.errors import OwnAccount
from server.deps import AdminUser, CurrentPrincipal, CurrentUser, ServicesDep, SessionDep
from server.errors import InvalidCredentials, NotFound
from server.identity import login as signin
from server.identity import service
from server.identity.login import LoginSource
from server.identity.models import Role, User, UserPublic
from server.security.throttle import LoginThrottled

router = APIRouter(prefix="/api/v1", tags=["identity"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int
    user: UserPublic


class UserCreate(BaseModel):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9._@-]+$")
    display_name: str = Field(min_length=1, max_length=120)
    role: Role
    password: str = Field(min_length=12, max_length=256)
    establishment: str | None = Field(default=None, max_length=120)


def _pair(pair: service.TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        user=UserPublic.model_validate(pair.user, from_attributes=True),
    )


@router.post(
    "/auth/login",
    response_model=TokenResponse,
    responses={
        401: {"description": "invalid_credentials (also for unknown and disabled users)"},
        429: {"description": "login_throttled: too many attempts; Retry-After says when to try again"},
    },
)
def login(body: LoginRequest, request: Request, services: ServicesDep, session: SessionDep) -> TokenResponse:
    """Sign in with username and password; returns a 15-minute access token and a refresh token."""
    source = LoginSource(
        ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )
    try:
        pair = signin.login(
            session=session,
            jwt=services.jwt,
            policy=services.login_policy,
            throttle=services.login_throttle,
            username=body.username,
            password=body.password,
            source=source,
        )
    except (InvalidCredentials, LoginThrottled) as exc:
        services.metrics.logins.labels("throttled" if isinstance(exc, LoginThrottled) else "failed").inc()
        session.commit()  # keep the audit entry even though the request fails
        raise
    services.metrics.logins.labels("ok").inc()
    return _pair(pair)


@router.post("/auth/refresh", response_model=TokenResponse)
def refresh(body: RefreshRequest, services: ServicesDep, session: SessionDep) -> TokenResponse:
    """Swap a refresh token for a new pair; reusing an old refresh token ends the whole session."""
    pair = service.refresh(
        session=session,
        jwt=services.jwt,
        policy=services.login_policy,
        refresh_token=body.refresh_token,
    )
    return _pair(pair)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(principal: CurrentPrincipal, session: SessionDep, body: LogoutRequest | None = None) -> None:
    """End this session: the access token stops working and its refresh tokens are revoked."""
    service.logout(
        session=session,
        user_id=principal.user.id,
        access_jti=principal.jti,
        access_exp=principal.expires_at,
        refresh_token=body.refresh_token if body else None,
    )


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    """Who the access token belongs to."""
    return UserPublic.model_validate(user, from_attributes=True)


@router.get("/users", response_model=list[UserPublic])
def list_users(_admin: AdminUser, session: SessionDep, role: Role | None = None) -> list[UserPublic]:
    """List users (admin)."""
    return [
        UserPublic.model_validate(u, from_attributes=True)
        for u in service.list_users(session=session, role=role)
    ]


def _by(admin: User) -> service.ChangedBy:
    return service.ChangedBy(actor_id=admin.id, actor_role=admin.role.value, via="api")


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, admin: AdminUser, session: SessionDep) -> UserPublic:
    """Create a user (admin; audited as ``user.create``)."""
    user = service.create_user(
        session=session,
        username=body.username,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
        establishment=body.establishment,
        changed_by=_by(admin),
    )
    return UserPublic.model_validate(user, from_attributes=True)


@router.post("/users/{user_id}/disable", response_model=UserPublic)
def disable_user(user_id: str, admin: AdminUser, session: SessionDep) -> UserPublic:
    """Disable a user (admin; audited as ``user.disable``); their sessions end at once. Not oneself."""
    try:
        if user_id == admin.id:
            # Same rule as the admin console: the last admin must never lock everyone out.
            raise OwnAccount("You cannot disable your own account; ask another admin")
        target = service.get_user(session=session, user_id=user_id)
    except (OwnAccount, NotFound) as exc:
        service.record_refused_change(
            session=session,
            changed_by=_by(admin),
            action="user.disable",
            # An unknown id is the caller's text: not copied into the log.
            user_id=user_id if isinstance(exc, OwnAccount) else None,
            reason=exc.code,
        )
        raise
    user = service.set_disabled(session=session, user=target, disabled=True, changed_by=_by(admin))
    return UserPublic.model_validate(user, from_attributes=True)
