"""Who the device is, as enrolment recorded it: kind, platform and the identifiers rules check."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from device_policy.errors import UnsupportedPlatform


class Platform(StrEnum):
    """Operating systems the policy has rules for."""

    LINUX = "linux"
    WINDOWS = "windows"


class DeviceKind(StrEnum):
    """What the enrolled device is for; rules may apply to some kinds only."""

    PRISON_LAPTOP = "prison_laptop"
    ROOM_ENDPOINT = "room_endpoint"


class EnrolledIdentity(BaseModel):
    """The values recorded at enrolment that ``matches_enrolled`` rules compare facts with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(min_length=1, max_length=128)
    device_kind: DeviceKind
    iccid: str | None = Field(default=None, max_length=32)
    imsi: str | None = Field(default=None, max_length=32)
    imei: str | None = Field(default=None, max_length=32)


ENROLLED_REFERENCES: dict[str, str] = {
    "enrolled.iccid": "iccid",
    "enrolled.imsi": "imsi",
    "enrolled.imei": "imei",
}
"""Operands a ``matches_enrolled`` rule may name, mapped to the EnrolledIdentity field."""


def enrolled_value(enrolled: EnrolledIdentity, reference: str) -> str | None:
    """The enrolled value an ``enrolled.*`` operand refers to (None if not enrolled)."""
    value = getattr(enrolled, ENROLLED_REFERENCES[reference])
    return value if isinstance(value, str) else None


def parse_platform(platform: str) -> Platform:
    """Turn a platform name into ``Platform``, refusing one the policy has no rules for."""
    try:
        return Platform(platform)
    except ValueError:
        known = ", ".join(p.value for p in Platform)
        raise UnsupportedPlatform(
            f'Platform "{platform[:40]}" has no policy rules; expected one of {known}'
        ) from None
