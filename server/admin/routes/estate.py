"""Devices, users and the day's consultations: what the console shows and the actions on them."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from server.admin import consultations as day_view
from server.admin import devices as device_view
from server.admin import users as accounts
from server.admin.deps import AdminDep
from server.admin.events import record_admin
from server.admin.routes.headers import AdminRoute
from server.admin.schemas import (
    AccountCreate,
    AccountCreated,
    AccountOut,
    CancelRequest,
    ConsultationOut,
    DeviceOut,
    DeviceRevokeRequest,
    FailedRule,
    LastCheckOut,
    ParsedOut,
    ParseRequest,
)
from server.db import utcnow
from server.deps import ServicesDep, SessionDep
from server.devices.enrolment import enrol_device, get_device, revoke_device
from server.devices.models import Device, DeviceCreate
from server.devices.policy import active_policy
from server.devices.suspension import suspend_in_calls
from server.identity.models import User
from server.services import Services

log = logging.getLogger("telemed.admin")

router = APIRouter(prefix="/admin/api", tags=["admin"], route_class=AdminRoute)

# --- Devices ---------------------------------------------------------------------------------------


def _device_out(services: Services, item: device_view.DeviceWithCheck) -> DeviceOut:
    d, check = item.device, item.last_check
    last = None
    if check is not None:
        rules = [r for r in check.failed_rules.split(",") if r] if check.outcome != "pass" else []
        details = device_view.rule_details(active_policy(services.settings).policy, rules)
        last = LastCheckOut(
            checked_at=check.checked_at,
            outcome=check.outcome,
            code=check.code,
            failed_rules=[FailedRule(**r) for r in details],
            policy_version=check.policy_version,
        )
    return DeviceOut(
        id=d.id,
        kind=d.kind,
        display_name=d.display_name,
        establishment=d.establishment,
        serial=d.serial,
        model=d.model,
        status=d.status.value if hasattr(d.status, "value") else d.status,
        key_thumbprint=d.key_thumbprint,
        enrolled_at=d.enrolled_at,
        revoked_at=d.revoked_at,
        last_check=last,
    )


def _one(services: Services, session: Session, device: Device) -> DeviceOut:
    item = next(i for i in device_view.devices_with_last_check(session=session) if i.device.id == device.id)
    return _device_out(services, item)


@router.get("/devices", response_model=list[DeviceOut])
def devices(admin: AdminDep, services: ServicesDep, session: SessionDep) -> list[DeviceOut]:
    """Enrolled laptops and room endpoints, each with its last posture check and failing rules."""
    return [_device_out(services, item) for item in device_view.devices_with_last_check(session=session)]


@router.post("/devices/parse", response_model=ParsedOut)
def parse_enrolment(body: ParseRequest, admin: AdminDep) -> ParsedOut:
    """Read what `telemed-device enrol` printed into the enrolment fields (nothing is saved)."""
    fields = device_view.parse_enrolment_text(body.text)
    needed = ["id", "kind", "public_key", "serial", "model"]
    if fields.get("kind") == "prison_laptop":
        needed += ["imei", "iccid", "imsi"]
    return ParsedOut(fields=fields, missing=[name for name in needed if not fields.get(name)])


@router.post("/devices", response_model=DeviceOut, status_code=status.HTTP_201_CREATED)
def enrol(body: DeviceCreate, admin: AdminDep, services: ServicesDep, session: SessionDep) -> DeviceOut:
    """Enrol a device with the public key its agent made (the fields the parse step filled in)."""
    device = enrol_device(
        session=session, data=body, enrolled_by=admin.user.id, request_id=admin.where.request_id
    )
    record_admin(
        session=session,
        action="admin.device.enrol",
        outcome="success",
        who=admin.who,
        where=admin.where,
        device_id=device.id,
        detail={"kind": device.kind.value, "thumbprint": device.key_thumbprint},
    )
    return _one(services, session, device)


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut)
async def revoke(
    device_id: str, body: DeviceRevokeRequest, admin: AdminDep, services: ServicesDep, session: SessionDep
) -> DeviceOut:
    """Revoke a device: its posture tokens and record grants stop at once, and it leaves any call."""

    def revoke_now() -> DeviceOut:
        device = get_device(session=session, device_id=device_id)
        revoke_device(
            session=session,
            device=device,
            by_user_id=admin.user.id,
            reason=body.reason,
            request_id=admin.where.request_id,
        )
        record_admin(
            session=session,
            action="admin.device.revoke",
            outcome="success",
            who=admin.who,
            where=admin.where,
            device_id=device.id,
            detail={"reason": body.reason},
        )
        session.commit()  # revoked before anyone hears of it
        return _one(services, session, device)

    out = await run_in_threadpool(revoke_now)
    await suspend_in_calls(services, device_id=device_id, reason="device_revoked")
    return out


# --- Users -----------------------------------------------------------------------------------------


def _account_out(user: User, second_factor: bool) -> AccountOut:
    now = utcnow()
    return AccountOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        establishment=user.establishment,
        disabled=user.disabled,
        second_factor=second_factor,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
        locked=user.locked_until is not None and user.locked_until > now,
    )


@router.get("/users", response_model=list[AccountOut])
def users(admin: AdminDep, session: SessionDep) -> list[AccountOut]:
    """Every account, by username, with its role, state and whether it has a second factor."""
    return [_account_out(a.user, a.second_factor) for a in accounts.list_accounts(session=session)]


@router.post("/users", response_model=AccountCreated, status_code=status.HTTP_201_CREATED)
def create_user(body: AccountCreate, admin: AdminDep, session: SessionDep) -> AccountCreated:
    """Create an account with a random first password, shown this once."""
    user, password = accounts.create_account(
        session=session,
        username=body.username,
        display_name=body.display_name,
        role=body.role,
        establishment=body.establishment or None,
    )
    record_admin(
        session=session,
        action="admin.user.create",
        outcome="success",
        who=admin.who,
        where=admin.where,
        detail={"user_id": user.id, "role": user.role.value},
    )
    return AccountCreated(user=_account_out(user, False), password=password)


def _set_enabled(admin: AdminDep, session: Session, user_id: str, enabled: bool) -> AccountOut:
    user = accounts.set_enabled(
        session=session, acting_user_id=admin.user.id, user_id=user_id, enabled=enabled, now=utcnow()
    )
    record_admin(
        session=session,
        action="admin.user.enable" if enabled else "admin.user.disable",
        outcome="success",
        who=admin.who,
        where=admin.where,
        detail={"user_id": user.id},
    )
    return _account_out(user, accounts.has_factor(session=session, user_id=user.id))


@router.post("/users/{user_id}/disable", response_model=AccountOut)
def disable_user(user_id: str, admin: AdminDep, session: SessionDep) -> AccountOut:
    """Disable an account (not your own): its API and console sessions end at once."""
    return _set_enabled(admin, session, user_id, enabled=False)


@router.post("/users/{user_id}/enable", response_model=AccountOut)
def enable_user(user_id: str, admin: AdminDep, session: SessionDep) -> AccountOut:
    """Re-enable a disabled account."""
    return _set_enabled(admin, session, user_id, enabled=True)


@router.post("/users/{user_id}/reset-second-factor", response_model=AccountOut)
def reset_second_factor(user_id: str, admin: AdminDep, session: SessionDep) -> AccountOut:
    """Forget an account's second factor and recovery codes: it enrols again at next sign-in."""
    user, had = accounts.reset_factor(session=session, user_id=user_id, now=utcnow())
    record_admin(
        session=session,
        action="admin.user.reset_second_factor",
        outcome="success",
        who=admin.who,
        where=admin.where,
        detail={"user_id": user.id, "had_second_factor": had},
    )
    return _account_out(user, False)


# --- Consultations ---------------------------------------------------------------------------------


def _consultation_out(item: day_view.DayItem) -> ConsultationOut:
    c = item.consultation
    return ConsultationOut(
        id=c.id,
        state=c.state.value,
        scheduled_start=c.scheduled_start,
        scheduled_end=c.scheduled_end,
        host_user_id=c.host_user_id,
        host_name=item.host_name,
        patient_id=c.patient_id,
        prison_number=item.prison_number,
        room_device_id=c.room_device_id,
        room_name=item.room_name,
        specialist_name=c.specialist_name,
        can_cancel=item.can_cancel,
        can_mark_no_show=item.can_mark_no_show,
    )


@router.get("/consultations", response_model=list[ConsultationOut])
def consultations(
    admin: AdminDep,
    session: SessionDep,
    day: Annotated[date | None, Query(description="a UTC day, YYYY-MM-DD; default today")] = None,
) -> list[ConsultationOut]:
    """The day's consultations across clinicians, in start order."""
    now = utcnow()
    items = day_view.day_list(session=session, admin=admin.user, day=day or now.date(), now=now)
    return [_consultation_out(i) for i in items]


async def _close(
    services: Services, session: Session, admin: AdminDep, consultation_id: str, kind: str, reason: str
) -> ConsultationOut:
    def run() -> ConsultationOut:
        if kind == "cancel":
            closed = day_view.cancel(
                session=session, admin=admin.user, consultation_id=consultation_id, reason=reason
            )
        else:
            closed = day_view.no_show(session=session, admin=admin.user, consultation_id=consultation_id)
        record_admin(
            session=session,
            action=f"admin.consultation.{'cancel' if kind == 'cancel' else 'no_show'}",
            outcome="success",
            who=admin.who,
            where=admin.where,
            consultation_id=closed.id,
            patient_id=closed.patient_id,
            detail={"reason": reason} if kind == "cancel" else {},
        )
        session.commit()  # closed before anyone connected hears of it
        now = utcnow()
        items = day_view.day_list(
            session=session, admin=admin.user, day=closed.scheduled_start.date(), now=now
        )
        return _consultation_out(next(i for i in items if i.consultation.id == closed.id))

    out = await run_in_threadpool(run)
    if services.hub is not None:
        try:
            await services.hub.consultation_ended(out.id, "cancelled" if kind == "cancel" else "no_show")
        except Exception:
            # The consultation is closed either way; sockets find out on their next message.
            log.exception("could not tell the signalling hub", extra={"consultation_id": out.id})
    return out


@router.post("/consultations/{consultation_id}/cancel", response_model=ConsultationOut)
async def cancel(
    consultation_id: str, body: CancelRequest, admin: AdminDep, services: ServicesDep, session: SessionDep
) -> ConsultationOut:
    """Cancel a consultation that has not gone live; anyone waiting is told."""
    return await _close(services, session, admin, consultation_id, "cancel", body.reason)


@router.post("/consultations/{consultation_id}/no-show", response_model=ConsultationOut)
async def no_show(
    consultation_id: str, admin: AdminDep, services: ServicesDep, session: SessionDep
) -> ConsultationOut:
    """Record that the consultation did not take place (once its start has passed)."""
    return await _close(services, session, admin, consultation_id, "no_show", "no show")
