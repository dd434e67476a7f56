"""Signed posture reports: the agent signs what it collected, the server checks it.

The signature is Ed25519 over ``ATTESTATION_CONTEXT + canonical_json(report)`` where
``report`` is the report object **as it was sent** (RFC 8785 canonical JSON of the wire
value: absent optional fields stay absent, time strings stay as written), never a
re-serialisation of the parsed model — so any client that canonicalises what it sends can
sign, in any language. The context prefix keeps a report signature from ever being
mistaken for a request-proof signature made with the same device key. ``verify_report`` checks, in this order:
shape (``malformed_report``), signature (``bad_signature``), device id and, if given,
device kind (``device_mismatch``), nonce (``nonce_mismatch``), policy hash
(``policy_mismatch``) and clock (``clock_skew``). Single use and expiry of the nonce are
the server's nonce store's job.

Key helpers (``device_policy.keys``) and request proofs (``device_policy.proof``) are
re-exported here so that agent and server need one import for the whole posture flow.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from device_policy.canonical import canonical_json
from device_policy.errors import (
    BadSignature,
    CanonicalJsonError,
    ClockSkew,
    DeviceMismatch,
    MalformedReport,
    NonceMismatch,
    PolicyMismatch,
)
from device_policy.facts import FactSet
from device_policy.keys import (
    b64url_decode,
    b64url_encode,
    generate_device_key,
    key_thumbprint,
    load_private_key,
    load_public_key_b64,
    public_key_b64,
    save_private_key,
)
from device_policy.policy.identity import DeviceKind, Platform
from device_policy.proof import sign_request_proof, verify_request_proof

__all__ = [
    "ATTESTATION_CONTEXT",
    "DEFAULT_MAX_SKEW",
    "AttestationReport",
    "SignedReport",
    "format_timestamp",
    "generate_device_key",
    "generate_nonce",
    "key_thumbprint",
    "load_private_key",
    "load_public_key_b64",
    "parse_signed_report",
    "public_key_b64",
    "report_signing_input",
    "signed_report_schema",
    "save_private_key",
    "sign_report",
    "sign_request_proof",
    "verify_report",
    "verify_request_proof",
]

ATTESTATION_CONTEXT = b"telemed-attestation-v1\x00"
DEFAULT_MAX_SKEW = timedelta(minutes=2)
MAX_FACTS = 256
_SIGNATURE_BYTES = 64


def generate_nonce() -> str:
    """A challenge nonce: 256 random bits, unpadded base64url (server side)."""
    return secrets.token_urlsafe(32)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; microseconds only when present."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


class AttestationReport(BaseModel):
    """What the agent observed, for which challenge, against which policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    nonce: str = Field(min_length=22, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    collected_at: datetime
    agent_version: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
    policy_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    platform: Platform
    device_kind: DeviceKind
    facts: FactSet = Field(max_length=MAX_FACTS)

    @field_validator("collected_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("collected_at needs a time zone (RFC 3339, UTC)")
        return value.astimezone(UTC)

    @field_serializer("collected_at")
    def _rfc3339(self, value: datetime) -> str:
        return format_timestamp(value)

    @model_validator(mode="after")
    def _facts_filed_by_name(self) -> AttestationReport:
        for key, fact in self.facts.items():
            if key != fact.name:
                raise ValueError(f'fact "{fact.name}" is filed under another key')
        return self


class SignedReport(BaseModel):
    """A report with its Ed25519 signature (unpadded base64url)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    report: AttestationReport
    signature: str = Field(min_length=1, max_length=128)
    # Canonical JSON of the report exactly as received; None when built from a model.
    _signed_form: bytes | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_signed_form(cls, data: Any, handler: ModelWrapValidatorHandler[SignedReport]) -> SignedReport:
        # The signature covers what the device sent, not what the model makes of it: a
        # JavaScript client omits null fields and writes "….000Z"; re-serialising the parsed
        # model would change those bytes and refuse an honest report.
        signed = handler(data)
        raw = data.get("report") if isinstance(data, Mapping) else None
        if isinstance(raw, Mapping):
            try:
                signed._signed_form = canonical_json(raw)
            except CanonicalJsonError:
                # Not JSON data (a Python caller's datetime…): fall back to the model's form,
                # which refuses what JSON cannot carry (report_signing_input).
                signed._signed_form = None
        return signed

    def signing_input(self) -> bytes:
        """The bytes the signature must cover: context prefix + canonical JSON of the report as sent."""
        if self._signed_form is not None:
            return ATTESTATION_CONTEXT + self._signed_form
        return report_signing_input(self.report)


def report_signing_input(report: AttestationReport) -> bytes:
    """The exact bytes that are signed: context prefix + canonical JSON of the report."""
    try:
        return ATTESTATION_CONTEXT + canonical_json(report.model_dump(mode="json"))
    except CanonicalJsonError as exc:
        raise MalformedReport(f"The report cannot be canonicalised: {exc.detail}") from None


def signed_report_schema() -> dict[str, Any]:
    """The JSON Schema of a signed report body, self-contained (no ``$ref``), for OpenAPI."""
    schema = SignedReport.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    inlined["description"] = (
        "A posture report and its Ed25519 signature over the report as sent (docs/policy.md section 7)."
    )
    return inlined


def sign_report(report: AttestationReport, private_key: Ed25519PrivateKey) -> SignedReport:
    """Sign a report with the device key (agent side)."""
    signature = private_key.sign(report_signing_input(report))
    return SignedReport(report=report, signature=b64url_encode(signature))


def parse_signed_report(data: bytes | str | Mapping[str, Any]) -> SignedReport:
    """Validate a signed report from the wire; MalformedReport names the first bad fields."""
    if isinstance(data, bytes | str):
        data = _load_json(data)
    try:
        return SignedReport.model_validate(data)
    except ValidationError as exc:
        # Field locations only, cut short: the rejected input may be anything the device sent.
        where = sorted({_location(e["loc"]) for e in exc.errors()})
        raise MalformedReport(
            "The signed report is malformed at: " + ", ".join(where[:10]), fields=where[:10]
        ) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a duplicated key; the signed form must be one.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate object key")
        result[key] = value
    return result


def _load_json(data: bytes | str) -> Any:
    try:
        return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and UnicodeDecodeError; the text is not echoed.
        raise MalformedReport(
            "The signed report is not a JSON document (UTF-8, no duplicate keys)", fields=["body"]
        ) from None


def _location(loc: tuple[int | str, ...]) -> str:
    text = ".".join(str(part) for part in loc) or "body"
    return text if len(text) <= 120 else text[:119] + "…"


def verify_report(
    signed: SignedReport | Mapping[str, Any] | bytes | str,
    *,
    public_key: Ed25519PublicKey,
    expected_nonce: str,
    expected_device_id: str,
    expected_policy_hash: str,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    expected_device_kind: DeviceKind | None = None,
) -> AttestationReport:
    """Check a signed report against the challenge and enrolment; return the trusted report."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not isinstance(signed, SignedReport):
        signed = parse_signed_report(signed)
    report = signed.report
    try:
        signature = b64url_decode(signed.signature)
    except ValueError:
        raise BadSignature("The signature is not unpadded base64url") from None
    if len(signature) != _SIGNATURE_BYTES:
        raise BadSignature(f"An Ed25519 signature has 64 bytes, not {len(signature)}")
    try:
        public_key.verify(signature, signed.signing_input())
    except InvalidSignature:
        raise BadSignature(
            f'The signature does not verify with the key enrolled for "{expected_device_id}"'
        ) from None
    if not hmac.compare_digest(report.device_id.encode(), expected_device_id.encode()):
        raise DeviceMismatch(
            f'The report names device "{report.device_id}", '
            f'the challenge was issued to "{expected_device_id}"'
        )
    if expected_device_kind is not None and report.device_kind != expected_device_kind:
        raise DeviceMismatch(
            f'The report says device kind "{report.device_kind}", '
            f'"{expected_device_id}" is enrolled as "{DeviceKind(expected_device_kind)}"'
        )
    if not hmac.compare_digest(report.nonce.encode(), expected_nonce.encode()):
        raise NonceMismatch("The report answers a different challenge than the one issued")
    if report.policy_hash != expected_policy_hash:
        raise PolicyMismatch(
            "The report was made for another policy; fetch the current policy and re-attest",
            expected_policy_hash=expected_policy_hash,
        )
    skew = report.collected_at - now
    if abs(skew) > max_skew:
        direction = "ahead of" if skew > timedelta(0) else "behind"
        raise ClockSkew(
            f"The report time is {abs(int(skew.total_seconds()))} s {direction} the server "
            f"clock; at most {int(max_skew.total_seconds())} s is allowed",
        )
    return report
