"""Challenge–response attestation: check a signed posture report, evaluate the policy, issue a token.

Checks run in this order, each with its own stable code::

    device enrolled             unknown_device
    device active               device_revoked
    report shape                malformed_report
    signature (enrolled key)    bad_signature      a report signed by a foreign key stops here
    report names this device    device_mismatch    (and its enrolled kind)
    nonce issued by us          nonce_unknown
    nonce for this device       nonce_mismatch
    nonce not yet answered      nonce_reused
    nonce still fresh           nonce_expired
    current policy hash         policy_mismatch
    device clock                clock_skew
    real collectors             simulated_source_refused (outside development mode)
    policy evaluation           policy_failed (403, with the failed rules)

A failed evaluation also ends what the device held from earlier checks: its record grants
are revoked and its older posture tokens are refused (``server.devices.posture``).

The signature is checked before the nonce is spent, so nobody without the device key can
use up a device's challenge. Every attempt, whatever its outcome, becomes a
``device_checks`` row and a ``device.check`` audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlmodel import Session

from device_policy.attestation import AttestationReport, SignedReport, parse_signed_report, verify_report
from device_policy.errors import DevicePolicyError, DeviceRevoked, MalformedReport, UnknownDevice
from device_policy.keys import load_public_key_b64
from device_policy.policy import DeviceKind as PolicyDeviceKind
from device_policy.policy import EnrolledIdentity, PolicyResult, RuleResult, evaluate
from device_policy.posture_token import TokenSigner, issue_posture_token
from device_policy.simulated import refuse_simulated
from records.grants import revoke_device_grants
from server.devices.challenges import consume_challenge
from server.devices.checks import record_check
from server.devices.models import CheckOutcome, Device, DeviceStatus
from server.devices.policy import ActivePolicy
from server.errors import PolicyFailed
from server.security.jwt import new_jti

POSTURE_TOKEN_TTL = timedelta(minutes=5)
MAX_REPORT_BYTES = 256 * 1024


@dataclass(frozen=True)
class AttestationPassed:
    """A compliant device's posture token and the evaluation behind it."""

    device: Device
    token: str
    jti: str
    expires_at: datetime
    result: PolicyResult


def rule_summary(result: RuleResult) -> dict[str, Any]:
    """The public form of one rule outcome: id, title, severity, actual value, remediation."""
    return {
        "id": result.rule_id,
        "title": result.title,
        "severity": result.severity.value,
        "outcome": result.outcome.value,
        "actual": result.actual,
        "remediation": result.remediation,
    }


def enrolled_identity(device: Device) -> EnrolledIdentity:
    """What enrolment recorded, as the policy's ``matches_enrolled`` rules need it."""
    return EnrolledIdentity(
        device_id=device.id,
        device_kind=PolicyDeviceKind(device.kind.value),
        iccid=device.iccid,
        imsi=device.imsi,
        imei=device.imei,
    )


def load_active_device(*, session: Session, device_id: str) -> Device:
    """The enrolled, active device; ``unknown_device`` or ``device_revoked`` otherwise."""
    device = session.get(Device, device_id)
    if device is None:
        raise UnknownDevice(f'No device "{device_id}" is enrolled')
    if device.status != DeviceStatus.ACTIVE:
        raise DeviceRevoked(f'Device "{device_id}" is in state "{DeviceStatus(device.status).value}"')
    return device


def attest_device(
    *,
    session: Session,
    signer: TokenSigner,
    policy: ActivePolicy,
    allow_simulated: bool,
    device_id: str,
    body: bytes,
    now: datetime,
    ip: str | None = None,
    request_id: str | None = None,
) -> AttestationPassed:
    """Check a signed report for ``device_id``; a posture token if compliant, else raise (and record)."""
    establishment: str | None = None
    try:
        device = load_active_device(session=session, device_id=device_id)
        establishment = device.establishment
        report = _verified_report(session=session, device=device, policy=policy, body=body, now=now)
        refuse_simulated(report.facts, allow_simulated=allow_simulated)
        result = evaluate(
            policy.policy, report.facts, platform=report.platform, enrolled=enrolled_identity(device)
        )
        if not result.compliant:
            raise PolicyFailed(
                f'Device "{device.id}" does not meet policy {result.policy_version}: '
                f"{len(result.blocking)} blocking rule(s) not passed",
                failed_rules=[rule_summary(r) for r in result.blocking],
                warnings=[rule_summary(r) for r in result.warnings],
                policy_version=result.policy_version,
                report=result.model_dump(mode="json"),
            )
        jti = new_jti()
        token = issue_posture_token(
            signer=signer,
            device_id=device.id,
            device_kind=PolicyDeviceKind(device.kind.value),
            thumbprint=device.key_thumbprint,
            policy_version=policy.version,
            policy_hash=policy.hash,
            ttl=POSTURE_TOKEN_TTL,
            jti=jti,
        )
    except PolicyFailed as exc:
        record_check(
            session=session,
            device_id=device_id,
            outcome=CheckOutcome.FAIL,
            now=now,
            code=exc.code,
            failed_rules=[rule["id"] for rule in exc.extra["failed_rules"]],
            policy_version=exc.extra["policy_version"],
            ip=ip,
            establishment=establishment,
            request_id=request_id,
        )
        revoke_device_grants(session=session, device_id=device_id, reason="policy_failed", now=now)
        raise
    except DevicePolicyError as exc:
        record_check(
            session=session,
            device_id=device_id,
            outcome=CheckOutcome.REFUSED,
            now=now,
            code=exc.code,
            policy_version=policy.version,
            ip=ip,
            detail=exc.detail,
            establishment=establishment,
            request_id=request_id,
        )
        raise
    record_check(
        session=session,
        device_id=device.id,
        outcome=CheckOutcome.PASS,
        now=now,
        failed_rules=[r.rule_id for r in result.warnings],
        policy_version=result.policy_version,
        token_jti=jti,
        ip=ip,
        establishment=establishment,
        request_id=request_id,
    )
    # Floor to the second: the token's own exp is a whole second at or after this.
    expires_at = datetime.fromtimestamp(int((now + POSTURE_TOKEN_TTL).timestamp()), UTC)
    return AttestationPassed(device=device, token=token, jti=jti, expires_at=expires_at, result=result)


def _verified_report(
    *, session: Session, device: Device, policy: ActivePolicy, body: bytes, now: datetime
) -> AttestationReport:
    if len(body) > MAX_REPORT_BYTES:
        raise MalformedReport(f"The report is larger than {MAX_REPORT_BYTES} bytes")
    signed = parse_signed_report(body)
    public_key = load_public_key_b64(device.public_key)
    kind = PolicyDeviceKind(device.kind.value)
    _check_signature(signed, public_key=public_key, device_id=device.id, device_kind=kind)
    challenge = consume_challenge(session=session, device_id=device.id, nonce=signed.report.nonce, now=now)
    return verify_report(
        signed,
        public_key=public_key,
        expected_nonce=challenge.nonce,
        expected_device_id=device.id,
        expected_policy_hash=policy.hash,
        now=now,
        expected_device_kind=kind,
    )


def _check_signature(
    signed: SignedReport, *, public_key: Ed25519PublicKey, device_id: str, device_kind: PolicyDeviceKind
) -> None:
    # verify_report checks signature then device before anything else; with the report's own
    # nonce, policy hash and time as expectations, only those two checks can fail here.
    report = signed.report
    verify_report(
        signed,
        public_key=public_key,
        expected_nonce=report.nonce,
        expected_device_id=device_id,
        expected_policy_hash=report.policy_hash,
        now=report.collected_at,
        expected_device_kind=device_kind,
    )
