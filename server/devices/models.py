"""Enrolled devices: prison laptops and healthcare-room endpoints."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from server.db import UTCDateTime, utcnow


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
