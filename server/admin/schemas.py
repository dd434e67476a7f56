"""Request and response bodies of the console's JSON API (``/admin/api/…``), documented in docs/admin.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from server.devices.models import DeviceKind
from server.identity.models import Role

# --- Signing in ------------------------------------------------------------------------------


class SignInRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class SecondFactorRequest(BaseModel):
    """Exactly one of a TOTP code or a recovery code."""

    code: str | None = Field(default=None, max_length=16, description="6 digits from the authenticator app")
    recovery_code: str | None = Field(default=None, max_length=40, description="xxxx-xxxx-xxxx-xxxx")

    @model_validator(mode="after")
    def _one_of(self) -> SecondFactorRequest:
        if bool(self.code) == bool(self.recovery_code):
            raise ValueError("send either code or recovery_code")
        return self


class EnrolConfirm(BaseModel):
    code: str = Field(min_length=1, max_length=16)


class UserBrief(BaseModel):
    id: str
    username: str
    display_name: str


class SessionOut(BaseModel):
    """Where the console session stands; ``csrf_token`` goes in X-CSRF-Token on unsafe requests."""

    stage: Literal["second_factor", "enrol", "active"]
    user: UserBrief
    csrf_token: str
    session_id: str
    idle_timeout_s: int
    idle_expires_at: datetime
    expires_at: datetime
    recovery_codes_left: int | None = None


class EnrolmentOut(BaseModel):
    """The secret to add to an authenticator app, as a QR code (``qr_svg_url``) and as text."""

    secret: str = Field(description="base32, for typing in by hand")
    otpauth_uri: str
    qr_svg_url: str
    issuer: str
    account: str
    digits: int
    period_s: int
    algorithm: str


class EnrolledOut(BaseModel):
    """Enrolment done: the session is active; the recovery codes are shown this once."""

    session: SessionOut
    recovery_codes: list[str]


# --- Audit -------------------------------------------------------------------------------------


class AuditRow(BaseModel):
    """One audit entry as a search result row."""

    seq: int
    ts: str
    action: str
    outcome: str
    actor_id: str | None
    actor_role: str | None
    actor_name: str | None
    patient_id: str | None
    prison_number: str | None
    consultation_id: str | None
    purpose_of_use: str | None
    device_id: str | None
    ip: str | None
    authority_jti: str | None
    reason: str | None
    description: str | None
    document_ids: list[str]
    intact: bool = Field(description="the entry's hash matches its contents")


class AuditPageOut(BaseModel):
    entries: list[AuditRow]
    next_cursor: str | None
    patient_id: str | None = Field(default=None, description="the patient the search resolved to")


class AuditEntryOut(BaseModel):
    """A whole entry (every field, export format) and the names its ids stand for."""

    entry: dict[str, Any]
    actor_name: str | None
    prison_number: str | None
    intact: bool


class CheckpointOut(BaseModel):
    tree_size: int
    ts: str
    key_id: str


class IntegrityOut(BaseModel):
    head_seq: int
    checkpoint: CheckpointOut | None
    last_verification: dict[str, Any] | None
    status: Literal["ok", "failed", "unknown"]
    summary: str


class VerifyOut(BaseModel):
    ok: bool
    status: Literal["ok", "failed"]
    summary: str
    head_seq: int
    entries_checked: int
    checkpoints_checked: int
    anchored_size: int
    unanchored_entries: int
    first_bad_seq: int | None
    problem: str | None
    checkpoint: CheckpointOut | None


# --- Reviews ----------------------------------------------------------------------------------


class SignOffRequest(BaseModel):
    decision: Literal["reviewed", "escalated"]
    comment: str = Field(default="", max_length=2000)


class BreakGlassOut(BaseModel):
    id: str
    user_id: str
    user_name: str | None
    patient_id: str
    prison_number: str | None
    device_id: str
    reason: str
    opened_at: datetime
    expires_at: datetime
    status: Literal["pending", "approved", "rejected"]
    decision: Literal["reviewed", "escalated"] | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None
    reads: list[AuditRow]


class SignOffOut(BaseModel):
    decision: Literal["reviewed", "escalated"]
    comment: str
    reviewer_id: str
    reviewer_name: str | None
    reviewed_at: datetime


class OutsideRow(BaseModel):
    entry: AuditRow
    break_glass_id: str | None = Field(description="set when the access was under a break-glass grant")
    sign_off: SignOffOut | None


class OutsidePageOut(BaseModel):
    entries: list[OutsideRow]
    next_cursor: str | None


# --- Devices ----------------------------------------------------------------------------------


class FailedRule(BaseModel):
    id: str
    title: str
    remediation: str


class LastCheckOut(BaseModel):
    checked_at: datetime
    outcome: Literal["pass", "fail", "refused"]
    code: str | None
    failed_rules: list[FailedRule]
    policy_version: str | None


class DeviceOut(BaseModel):
    id: str
    kind: DeviceKind
    display_name: str
    establishment: str | None
    serial: str
    model: str
    status: Literal["active", "revoked"]
    key_thumbprint: str
    enrolled_at: datetime
    revoked_at: datetime | None
    last_check: LastCheckOut | None


class ParseRequest(BaseModel):
    text: str = Field(min_length=1, max_length=8000)


class ParsedOut(BaseModel):
    fields: dict[str, str]
    missing: list[str] = Field(description="fields the enrolment still needs")


class DeviceRevokeRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=300)


# --- Users ------------------------------------------------------------------------------------


class AccountOut(BaseModel):
    id: str
    username: str
    display_name: str
    role: Role
    establishment: str | None
    disabled: bool
    second_factor: bool
    created_at: datetime
    last_login_at: datetime | None
    locked: bool


class AccountCreate(BaseModel):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    display_name: str = Field(min_length=1, max_length=120)
    role: Role
    establishment: str | None = Field(default=None, max_length=120)


class AccountCreated(BaseModel):
    """The new account and its first password (shown this once; hand it over in person)."""

    user: AccountOut
    password: str


# --- Consultations ----------------------------------------------------------------------------


class ConsultationOut(BaseModel):
    id: str
    state: str
    scheduled_start: datetime
    scheduled_end: datetime
    host_user_id: str
    host_name: str
    patient_id: str
    prison_number: str
    room_device_id: str | None
    room_name: str | None
    specialist_name: str | None
    can_cancel: bool
    can_mark_no_show: bool


class CancelRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


# --- Overview ---------------------------------------------------------------------------------


class OverviewOut(BaseModel):
    """What needs the admin's attention, for the home screen."""

    pending_break_glass: int
    failed_device_checks_24h: int
    integrity: IntegrityOut
    consultations_today: int
