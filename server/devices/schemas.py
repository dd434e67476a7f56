"""Request and response bodies of the device API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from server.devices.models import DeviceKind


class RevokeRequest(BaseModel):
    reason: str = Field(default="revoked by an admin", min_length=1, max_length=300)


class ChallengeResponse(BaseModel):
    """A single-use nonce to sign into the next posture report."""

    device_id: str
    device_kind: DeviceKind
    nonce: str = Field(description="256 random bits, unpadded base64url; answer it once")
    expires_at: datetime
    policy_id: str
    policy_version: str
    policy_hash: str = Field(description="Put this in the report's policy_hash")


class RuleSummary(BaseModel):
    """One rule's outcome as a device sees it."""

    id: str
    title: str
    severity: str
    outcome: str
    actual: Any = None
    remediation: str | None = None


class AttestResponse(BaseModel):
    """A compliant device's posture token, bound to its key, with the rule report."""

    compliant: bool = True
    device_id: str
    posture_token: str
    token_jti: str
    expires_at: datetime
    expires_in: int
    policy_version: str
    policy_hash: str
    warnings: list[RuleSummary]
    report: dict[str, Any] = Field(description="Every rule that applied, with the value seen")


class PostureContextPublic(BaseModel):
    """What the server believes about the device behind a posture-bound request."""

    device_id: str
    device_kind: DeviceKind
    thumbprint: str
    jti: str
    expires_at: datetime
    policy_version: str


class DeviceCheckPublic(BaseModel):
    """One recorded attestation attempt."""

    id: str
    device_id: str
    checked_at: datetime
    outcome: str
    code: str | None
    failed_rules: list[str]
    policy_version: str | None
    token_jti: str | None
    ip: str | None
    detail: str | None


class PolicyPublic(BaseModel):
    """The device policy in force."""

    id: str
    version: str
    hash: str
    description: str
    rules: list[dict[str, Any]]


class RoomPublic(BaseModel):
    """A bookable healthcare room, as any staff member may see it: nothing else about the device."""

    id: str
    display_name: str = Field(description="The room's display name, or its id when it has none")
    establishment: str | None
