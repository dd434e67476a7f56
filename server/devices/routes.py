"""HTTP API for device enrolment (admins) and posture attestation (devices).

Admin: ``POST/GET /api/v1/devices``, ``GET /api/v1/devices/{id}``,
``POST /api/v1/devices/{id}/revoke``, ``GET /api/v1/device-checks``.
Device: ``POST /api/v1/devices/{id}/challenge``, ``POST /api/v1/devices/{id}/attest``,
``GET /api/v1/devices/me/posture`` (posture token + proof), ``GET /api/v1/device-policy``.
Staff (clinicians and admins): ``GET /api/v1/rooms``, the rooms they can book.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, status
from starlette.concurrency import run_in_threadpool

from device_policy.attestation import signed_report_schema
from device_policy.errors import DevicePolicyError, DeviceRevoked
from server.db import utcnow
from server.deps import AdminUser, CompliantDevice, ServicesDep, SessionDep, StaffUser
from server.devices import checks, enrolment, rooms
from server.devices.attest import (
    MAX_REPORT_BYTES,
    AttestationPassed,
    attest_device,
    load_active_device,
    rule_summary,
)
from server.devices.challenges import issue_challenge
from server.devices.models import CheckOutcome, DeviceCheck, DeviceCreate, DevicePublic, DeviceStatus
from server.devices.policy import active_policy
from server.devices.posture import record_refused_device
from server.devices.schemas import (
    AttestResponse,
    ChallengeResponse,
    DeviceCheckPublic,
    PolicyPublic,
    PostureContextPublic,
    RevokeRequest,
    RoomPublic,
    RuleSummary,
)
from server.devices.suspension import suspend_in_calls
from server.errors import PolicyFailed

router = APIRouter(prefix="/api/v1", tags=["devices"])


async def _read_limited(request: Request, limit: int) -> bytes:
    # Stop reading just past the limit rather than buffer whatever an unauthenticated caller
    # sends; attest_device refuses (and records) the oversized report.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/devices", response_model=DevicePublic, status_code=status.HTTP_201_CREATED)
def enrol(body: DeviceCreate, admin: AdminUser, session: SessionDep, request: Request) -> DevicePublic:
    """Enrol a device with the public key that `telemed-device enrol` printed (admin only)."""
    device = enrolment.enrol_device(
        session=session, data=body, enrolled_by=admin.id, request_id=_request_id(request)
    )
    return DevicePublic.model_validate(device, from_attributes=True)


@router.get("/devices", response_model=list[DevicePublic])
def list_devices(
    admin: AdminUser, session: SessionDep, status: DeviceStatus | None = None
) -> list[DevicePublic]:
    """List enrolled devices, optionally only active or revoked ones (admin only)."""
    return [
        DevicePublic.model_validate(d, from_attributes=True)
        for d in enrolment.list_devices(session=session, status=status)
    ]


@router.get("/devices/me/posture", response_model=PostureContextPublic)
def my_posture(device: CompliantDevice) -> PostureContextPublic:
    """Show what the server accepts about the calling device (needs posture token and proof)."""
    return PostureContextPublic(
        device_id=device.device_id,
        device_kind=device.device_kind,
        thumbprint=device.thumbprint,
        jti=device.jti,
        expires_at=device.expires_at,
        policy_version=device.policy_version,
    )


@router.get("/devices/{device_id}", response_model=DevicePublic)
def get_device(device_id: str, admin: AdminUser, session: SessionDep) -> DevicePublic:
    """One enrolled device (admin only)."""
    device = enrolment.get_device(session=session, device_id=device_id)
    return DevicePublic.model_validate(device, from_attributes=True)


@router.post("/devices/{device_id}/revoke", response_model=DevicePublic)
async def revoke(
    device_id: str,
    admin: AdminUser,
    services: ServicesDep,
    session: SessionDep,
    request: Request,
    body: RevokeRequest | None = None,
) -> DevicePublic:
    """Revoke a device: its posture tokens stop working at once and it is suspended from calls."""
    reason = (body or RevokeRequest()).reason

    def revoke_now() -> DevicePublic:
        device = enrolment.get_device(session=session, device_id=device_id)
        enrolment.revoke_device(
            session=session,
            device=device,
            by_user_id=admin.id,
            reason=reason,
            request_id=_request_id(request),
        )
        session.commit()  # revoked before anyone hears of it
        return DevicePublic.model_validate(device, from_attributes=True)

    public = await run_in_threadpool(revoke_now)
    await suspend_in_calls(services, device_id=device_id, reason="device_revoked")
    return public


@router.get("/device-checks", response_model=list[DeviceCheckPublic])
def list_device_checks(
    admin: AdminUser,
    session: SessionDep,
    device_id: str | None = None,
    outcome: CheckOutcome | None = Query(None, description="pass, fail or refused"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[DeviceCheckPublic]:
    """Recorded posture checks, newest first; `?outcome=fail` lists failed checks (admin only)."""
    return [
        _check_public(c)
        for c in checks.list_checks(session=session, device_id=device_id, outcome=outcome, limit=limit)
    ]


def _check_public(check: DeviceCheck) -> DeviceCheckPublic:
    return DeviceCheckPublic(
        id=check.id,
        device_id=check.device_id,
        checked_at=check.checked_at,
        outcome=check.outcome,
        code=check.code,
        failed_rules=[r for r in check.failed_rules.split(",") if r],
        policy_version=check.policy_version,
        token_jti=check.token_jti,
        ip=check.ip,
        detail=check.detail,
    )


@router.get("/device-policy", response_model=PolicyPublic)
def device_policy(services: ServicesDep) -> PolicyPublic:
    """The device policy in force: version, hash and rules."""
    policy = active_policy(services.settings)
    dumped = policy.policy.model_dump(mode="json")
    return PolicyPublic(
        id=policy.policy.id,
        version=policy.version,
        hash=policy.hash,
        description=policy.policy.description,
        rules=dumped["rules"],
    )


@router.post("/devices/{device_id}/challenge", response_model=ChallengeResponse)
def challenge(device_id: str, services: ServicesDep, session: SessionDep) -> ChallengeResponse:
    """Ask for a single-use attestation nonce (about two minutes) and the policy hash to sign."""
    try:
        device = load_active_device(session=session, device_id=device_id)
    except DeviceRevoked as exc:
        # Only an enrolled device's id is recorded: an unknown one is the caller's text.
        record_refused_device(session=session, action="device.challenge", device_id=device_id, exc=exc)
        raise
    policy = active_policy(services.settings)
    issued = issue_challenge(session=session, device=device, policy=policy, now=utcnow())
    return ChallengeResponse(
        device_id=device.id,
        device_kind=device.kind,
        nonce=issued.nonce,
        expires_at=issued.expires_at,
        policy_id=policy.policy.id,
        policy_version=policy.version,
        policy_hash=policy.hash,
    )


@router.post(
    "/devices/{device_id}/attest",
    response_model=AttestResponse,
    responses={403: {"description": "policy_failed (with failed_rules), device_revoked…"}},
    # The body is read raw (the signature covers it as sent), so FastAPI cannot infer it.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": signed_report_schema()}},
        }
    },
)
async def attest(
    device_id: str, request: Request, services: ServicesDep, session: SessionDep
) -> AttestResponse:
    """Submit a signed posture report; a compliant device gets a key-bound posture token."""
    body = await _read_limited(request, MAX_REPORT_BYTES)

    def run() -> AttestationPassed:
        try:
            return attest_device(
                session=session,
                signer=services.jwt,
                policy=active_policy(services.settings),
                allow_simulated=services.settings.is_development,
                device_id=device_id,
                body=body,
                now=utcnow(),
                ip=_ip(request),
                request_id=_request_id(request),
            )
        except (DevicePolicyError, PolicyFailed):
            session.commit()  # keep the spent nonce and the record of the refusal
            raise

    try:
        passed = await run_in_threadpool(run)
    except PolicyFailed:
        await suspend_in_calls(services, device_id=device_id, reason="policy_failed")
        raise
    result = passed.result
    return AttestResponse(
        device_id=passed.device.id,
        posture_token=passed.token,
        token_jti=passed.jti,
        expires_at=passed.expires_at,
        expires_in=max(0, int((passed.expires_at - utcnow()).total_seconds())),
        policy_version=result.policy_version,
        policy_hash=result.policy_hash,
        warnings=[RuleSummary(**rule_summary(r)) for r in result.warnings],
        report=result.model_dump(mode="json"),
    )


@router.get("/rooms", response_model=list[RoomPublic], tags=["rooms"])
def list_rooms(user: StaffUser, session: SessionDep) -> list[RoomPublic]:
    """Active healthcare rooms to book, by establishment then name (clinicians and admins)."""
    return [
        RoomPublic(id=room.id, display_name=rooms.room_name(room), establishment=room.establishment)
        for room in rooms.list_rooms(session=session)
    ]
