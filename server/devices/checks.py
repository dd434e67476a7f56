"""The record of every posture check: a ``device_checks`` row and an audit event per attempt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from server.audit import record_event
from server.devices.models import CheckOutcome, DeviceCheck

_MAX_ID = 64
_MAX_DETAIL = 300
# A token's iat is whole seconds from the signer's clock, read just after the check's time.
_ISSUE_SLACK = timedelta(seconds=5)


def record_check(
    *,
    session: Session,
    device_id: str,
    outcome: CheckOutcome,
    now: datetime,
    code: str | None = None,
    failed_rules: Sequence[str] = (),
    policy_version: str | None = None,
    token_jti: str | None = None,
    ip: str | None = None,
    detail: str | None = None,
    establishment: str | None = None,
    request_id: str | None = None,
) -> DeviceCheck:
    """Keep one attestation attempt (pass, fail or refusal) and audit it as ``device.check``."""
    check = DeviceCheck(
        device_id=device_id[:_MAX_ID],
        checked_at=now,
        outcome=outcome.value,
        code=code,
        failed_rules=",".join(failed_rules)[:2000],
        policy_version=policy_version,
        token_jti=token_jti,
        ip=ip[:_MAX_ID] if ip else None,
        detail=detail[:_MAX_DETAIL] if detail else None,
    )
    session.add(check)
    session.flush()
    audit_detail: dict[str, Any] = {"check_id": check.id, "policy_version": policy_version}
    if code:
        audit_detail["code"] = code
    if failed_rules:
        audit_detail["failed_rules"] = list(failed_rules)
    record_event(
        session=session,
        action="device.check",
        outcome=outcome.value,
        actor_id=device_id[:_MAX_ID],
        actor_role="device",
        device_id=device_id[:_MAX_ID],
        authority_jti=token_jti,
        ip=ip,
        establishment=establishment,
        request_id=request_id,
        detail=audit_detail,
    )
    return check


def list_checks(
    *,
    session: Session,
    device_id: str | None = None,
    outcome: CheckOutcome | None = None,
    limit: int = 100,
) -> list[DeviceCheck]:
    """Posture checks, newest first, optionally for one device or one outcome."""
    query = select(DeviceCheck).order_by(col(DeviceCheck.checked_at).desc(), col(DeviceCheck.id))
    if device_id is not None:
        query = query.where(DeviceCheck.device_id == device_id)
    if outcome is not None:
        query = query.where(DeviceCheck.outcome == outcome.value)
    return list(session.exec(query.limit(limit)).all())


def failed_since_issue(*, session: Session, device_id: str, token_jti: str, issued_at: datetime) -> bool:
    """Whether the device failed a posture check after the check that issued this token.

    Only checks from the token's lifetime are read: the one that issued it (found by its
    jti; the token's ``iat`` stands in for a token no check issued) and any failure since.
    """
    rows = session.exec(
        select(DeviceCheck.checked_at, DeviceCheck.outcome, DeviceCheck.token_jti)
        .where(DeviceCheck.device_id == device_id)
        .where(col(DeviceCheck.checked_at) >= issued_at - _ISSUE_SLACK)
        .where(
            (col(DeviceCheck.outcome) == CheckOutcome.FAIL.value) | (col(DeviceCheck.token_jti) == token_jti)
        )
    ).all()
    issued = next((at for at, _, jti in rows if jti == token_jti), issued_at)
    return any(outcome == CheckOutcome.FAIL.value and at > issued for at, outcome, _ in rows)
