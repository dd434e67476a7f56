"""Errors raised by the records library.

Every error carries a stable snake_case ``code``, the HTTP ``status`` the server should
answer with, and a short human ``title``; the message names the state that refused.
The server maps the whole tree to ``application/problem+json`` with one handler.
Messages never contain key material, tokens or patient data.

The tree, grouped by what a caller can do about it::

    RecordsError
    ├── NotFoundOrDenied          404  not_found       -- missing and forbidden look the same
    ├── GrantError                401  grant_invalid   -- get (or renew) a valid record grant
    │   ├── GrantInvalid          401  grant_invalid
    │   ├── GrantExpired          401  grant_expired
    │   ├── GrantRevoked          401  grant_revoked
    │   ├── WrongAudience         401  wrong_audience
    │   ├── KeyBindingMismatch    401  key_binding_mismatch
    │   ├── NoPosture             403  no_posture            -- attest the device first
    │   ├── NotHost               403  not_host              -- only the host gets grants
    │   ├── RoomEndpointForbidden 403  room_endpoint_forbidden
    │   └── ConsultationNotLive   409  consultation_not_live -- names the current state
    ├── BreakGlassReasonRequired  422  breakglass_reason_required
    ├── IntegrityError            500  integrity_error -- stored ciphertext failed authentication
    ├── KeyUnavailable            500  key_unavailable -- a KEK version is not loaded
    ├── KeyConfigError            500  key_config_invalid -- KEK files/settings unusable
    └── AuditVerifyFailed         409  audit_verify_failed -- the audit export does not verify
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from records.audit.verify import VerifyReport

__all__ = [
    "AuditVerifyFailed",
    "BreakGlassReasonRequired",
    "ConsultationNotLive",
    "GrantError",
    "GrantExpired",
    "GrantInvalid",
    "GrantRevoked",
    "IntegrityError",
    "KeyBindingMismatch",
    "KeyConfigError",
    "KeyUnavailable",
    "NoPosture",
    "NotFoundOrDenied",
    "NotHost",
    "RecordsError",
    "RoomEndpointForbidden",
    "WrongAudience",
]


class RecordsError(Exception):
    """Base class: every records error has a code, an HTTP status and a title."""

    code: ClassVar[str] = "records_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Records error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.title
        super().__init__(self.message)


class NotFoundOrDenied(RecordsError):
    """The record does not exist or the caller may not see it; deliberately the same."""

    code = "not_found"
    status = 404
    title = "Not found"


class GrantError(RecordsError):
    """The record grant presented (or requested) cannot be used."""

    code = "grant_invalid"
    status = 401
    title = "Record grant is not valid"


class GrantInvalid(GrantError):
    """The grant is malformed, badly signed, or for another patient or scope."""


class GrantExpired(GrantError):
    """The grant's ``exp`` has passed."""

    code = "grant_expired"
    title = "Record grant has expired"


class GrantRevoked(GrantError):
    """The grant's ``jti`` is on the deny-list (consultation ended or admin revoked)."""

    code = "grant_revoked"
    title = "Record grant has been revoked"


class WrongAudience(GrantError):
    """The grant was issued for another audience."""

    code = "wrong_audience"
    title = "Record grant is for another audience"


class KeyBindingMismatch(GrantError):
    """The request was not proven by the device key named in the grant's ``cnf``."""

    code = "key_binding_mismatch"
    title = "Record grant is bound to another device key"


class NoPosture(GrantError):
    """No valid posture token for this device: it must attest and pass policy first."""

    code = "no_posture"
    status = 403
    title = "Device posture is not established"


class NotHost(GrantError):
    """Only the host clinician of a live consultation receives record grants."""

    code = "not_host"
    status = 403
    title = "Only the consultation host may access records"


class RoomEndpointForbidden(GrantError):
    """Room endpoints never get record access."""

    code = "room_endpoint_forbidden"
    status = 403
    title = "Room endpoints have no record access"


class ConsultationNotLive(GrantError):
    """Grants exist only while the consultation is live; the message names its state."""

    code = "consultation_not_live"
    status = 409
    title = "Consultation is not live"

    def __init__(self, message: str | None = None, *, state: str | None = None) -> None:
        self.state = state
        if message is None and state is not None:
            message = f'Cannot grant record access in consultation state "{state}"'
        super().__init__(message)


class BreakGlassReasonRequired(RecordsError):
    """Break-glass access needs a written reason."""

    code = "breakglass_reason_required"
    status = 422
    title = "A reason is required for break-glass access"


class IntegrityError(RecordsError):
    """Stored ciphertext or a wrapped key failed authentication (tampered, truncated, wrong key)."""

    code = "integrity_error"
    status = 500
    title = "Stored data failed its integrity check"


class KeyUnavailable(RecordsError):
    """The key-encryption key version a wrapped key names is not loaded."""

    code = "key_unavailable"
    status = 500
    title = "Key-encryption key is not available"

    def __init__(self, message: str | None = None, *, kek_version: int | None = None) -> None:
        self.kek_version = kek_version
        if message is None and kek_version is not None:
            message = f"Key-encryption key version {kek_version} is not loaded"
        super().__init__(message)


class KeyConfigError(RecordsError):
    """Key files or key settings are missing, malformed or too widely readable."""

    code = "key_config_invalid"
    status = 500
    title = "Key configuration is invalid"


class AuditVerifyFailed(RecordsError):
    """An audit export failed verification; ``report`` says where and how."""

    code = "audit_verify_failed"
    status = 409
    title = "Audit trail failed verification"

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        super().__init__(report.message)
