"""Enrolling, listing and revoking devices (the admin side of device posture)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from device_policy.keys import key_thumbprint, load_public_key_b64
from records.grants import revoke_device_grants
from server.audit import record_event
from server.db import utcnow
from server.devices.models import Device, DeviceCreate, DeviceStatus
from server.errors import AlreadyExists, InvalidState, NotFound


def enrol_device(
    *,
    session: Session,
    data: DeviceCreate,
    enrolled_by: str | None,
    actor_role: str | None = "admin",
    request_id: str | None = None,
) -> Device:
    """Enrol a device with its Ed25519 public key; refuses a taken id or an already enrolled key."""
    public_key = load_public_key_b64(data.public_key)  # KeyMaterialError (invalid_key) if not Ed25519
    thumbprint = key_thumbprint(public_key)
    if session.get(Device, data.id) is not None:
        raise AlreadyExists(f'A device with id "{data.id}" is already enrolled')
    holder = session.exec(select(Device).where(Device.key_thumbprint == thumbprint)).first()
    if holder is not None:
        # One key per device: a copied key would let two machines pass as one.
        raise AlreadyExists(f'This key is already enrolled for device "{holder.id}"')
    device = Device(
        **data.model_dump(exclude={"public_key"}),
        public_key=data.public_key,
        key_thumbprint=thumbprint,
        status=DeviceStatus.ACTIVE,
        enrolled_at=utcnow(),
        enrolled_by=enrolled_by,
    )
    session.add(device)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise AlreadyExists(f'A device with id "{data.id}" is already enrolled') from None
    record_event(
        session=session,
        action="device.enrol",
        outcome="success",
        actor_id=enrolled_by,
        actor_role=actor_role,
        device_id=device.id,
        establishment=device.establishment,
        request_id=request_id,
        detail={"kind": device.kind.value, "thumbprint": thumbprint},
    )
    return device


def get_device(*, session: Session, device_id: str) -> Device:
    """The enrolled device with this id (NotFound otherwise)."""
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f'No device with id "{device_id}" is enrolled')
    return device


def list_devices(*, session: Session, status: DeviceStatus | None = None) -> list[Device]:
    """Enrolled devices, by id; only those in ``status`` when given."""
    query = select(Device).order_by(col(Device.id))
    if status is not None:
        query = query.where(Device.status == status)
    return list(session.exec(query).all())


def revoke_device(
    *,
    session: Session,
    device: Device,
    by_user_id: str | None,
    reason: str,
    actor_role: str | None = "admin",
    request_id: str | None = None,
) -> Device:
    """Revoke a device: its posture tokens and record grants are refused from the next request on."""
    if device.status != DeviceStatus.ACTIVE:
        state = DeviceStatus(device.status).value
        raise InvalidState(f'Cannot revoke a device in state "{state}"', state=state)
    device.status = DeviceStatus.REVOKED
    device.revoked_at = utcnow()
    session.add(device)
    session.flush()
    record_event(
        session=session,
        action="device.revoke",
        outcome="success",
        actor_id=by_user_id,
        actor_role=actor_role,
        device_id=device.id,
        establishment=device.establishment,
        request_id=request_id,
        detail={"reason": reason},
    )
    revoke_device_grants(session=session, device_id=device.id, reason="device_revoked", now=device.revoked_at)
    return device
