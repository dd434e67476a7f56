"""Enrolled devices (prison laptops, healthcare-room endpoints), their challenges and checks."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import ValidationInfo, field_validator
from sqlalchemy import String
from sqlmodel import Field, SQLModel

from server.db import UTCDateTime, utcnow

# Path words under /api/v1/devices/ that can never be device ids.
RESERVED_DEVICE_IDS = frozenset({"me"})
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IDENTIFIERS = {
    "imei": (re.compile(r"^[0-9]{14,16}$"), "14 to 16 digits"),
    "iccid": (re.compile(r"^[0-9]{18,22}F?$"), "18 to 22 digits"),
    "imsi": (re.compile(r"^[0-9]{6,15}$"), "6 to 15 digits"),
}


class DeviceKind(StrEnum):
    """The two kinds of enrolled endpoint."""

    PRISON_LAPTOP = "prison_laptop"
    ROOM_ENDPOINT = "room_endpoint"


class DeviceStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class DeviceBase(SQLModel):
    id: str = Field(primary_key=True, min_length=3, max_length=64, regex=r"^[A-Za-z0-9._-]+$")
    kind: DeviceKind
    display_name: str = Field(default="", max_length=120)
    serial: str = Field(max_length=64)
    model: str = Field(max_length=120)
    type_approval: str = Field(default="", max_length=120, description="Type-approval reference of the model")
    establishment: str | None = Field(default=None, max_length=120)
    imei: str | None = Field(default=None, max_length=20, regex=r"^[0-9]{14,16}$")
    iccid: str | None = Field(default=None, max_length=22, regex=r"^[0-9]{18,22}F?$")
    imsi: str | None = Field(default=None, max_length=15, regex=r"^[0-9]{6,15}$")


class Device(DeviceBase, table=True):
    """An enrolled device and the public half of its Ed25519 key."""

    __tablename__ = "devices"

    public_key: str = Field(max_length=64, description="Ed25519 public key, base64url")
    key_thumbprint: str = Field(index=True, max_length=64, description="RFC 7638 JWK thumbprint")
    status: DeviceStatus = DeviceStatus.ACTIVE
    enrolled_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    enrolled_by: str | None = Field(default=None, max_length=32)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DevicePublic(DeviceBase):
    """A device as the admin API shows it."""

    public_key: str
    key_thumbprint: str
    status: DeviceStatus
    enrolled_at: datetime
    revoked_at: datetime | None


class DeviceCreate(DeviceBase):
    """What an admin sends to enrol a device: its identity and the public half of its key."""

    public_key: str = Field(
        min_length=1, max_length=64, description="Ed25519 public key, base64url (from telemed-device enrol)"
    )

    @field_validator("id")
    @classmethod
    def _usable_id(cls, value: str) -> str:
        # Attestation reports need an id that starts with a letter or digit.
        if not _DEVICE_ID.match(value):
            raise ValueError(
                "a device id is letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if value.lower() in RESERVED_DEVICE_IDS:
            raise ValueError(f'"{value}" is reserved')
        return value

    @field_validator("imei", "iccid", "imsi")
    @classmethod
    def _identifier_shape(cls, value: str | None, info: ValidationInfo) -> str | None:
        # sqlmodel's Field(regex=…) is not enforced by pydantic 2, so the shapes are checked here.
        if value is None:
            return None
        pattern, shape = _IDENTIFIERS[str(info.field_name)]
        if not pattern.match(value):
            raise ValueError(f"{info.field_name} must be {shape}")
        return value


class DeviceChallenge(SQLModel, table=True):
    """A single-use attestation nonce issued to one device."""

    __tablename__ = "device_challenges"

    nonce: str = Field(primary_key=True, max_length=64)
    device_id: str = Field(foreign_key="devices.id", index=True, max_length=64)
    policy_version: str = Field(max_length=20)
    policy_hash: str = Field(max_length=64)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CheckOutcome(StrEnum):
    """How one posture check ended."""

    PASS = "pass"  # noqa: S105 - not a password
    FAIL = "fail"
    REFUSED = "refused"


def _check_id() -> str:
    return uuid.uuid4().hex


class DeviceCheck(SQLModel, table=True):
    """One attestation attempt: passed, failed the policy, or refused before evaluation."""

    __tablename__ = "device_checks"

    id: str = Field(default_factory=_check_id, primary_key=True, max_length=32)
    device_id: str = Field(index=True, max_length=64)
    checked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    outcome: str = Field(sa_type=String(length=16), description="pass, fail or refused")
    code: str | None = Field(default=None, max_length=64, description="Refusal or failure code")
    failed_rules: str = Field(default="", max_length=2000, description="Comma-separated rule ids")
    policy_version: str | None = Field(default=None, max_length=20)
    token_jti: str | None = Field(default=None, max_length=64)
    ip: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=300)
