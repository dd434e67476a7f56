"""Audit entries and the hash chain that links them.

``entry_hash = SHA-256(bytes.fromhex(prev_hash) || canonical_json(payload))`` where the
payload is every field except ``entry_hash`` (so ``prev_hash`` is inside it too), with
null-valued optional fields left out so that adding an optional field later keeps old
hashes valid. The first entry's ``prev_hash`` is :data:`GENESIS_HASH`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "GENESIS_HASH",
    "AuditData",
    "AuditEntry",
    "AuditFields",
    "Outcome",
    "HASH_PATTERN",
    "canonical_json",
    "chain_entry",
    "check_ts",
    "compute_entry_hash",
    "format_ts",
    "utc_now_ts",
]

GENESIS_HASH = "0" * 64
HASH_PATTERN = r"^[0-9a-f]{64}$"
MAX_DETAIL_BYTES = 4096
_MAX_DEPTH = 6
_SAFE_INT = 2**53 - 1
# One spelling per instant, so a timestamp stored in a database column renders back exactly.
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
# A compact JWS (header.payload.signature) — tokens must never reach the audit log.
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

Outcome = Literal["allowed", "denied", "success", "failure"]


def canonical_json(value: Any) -> bytes:
    """Deterministic UTF-8 JSON: sorted keys, no whitespace, no NaN (RFC 8785 for our values)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def format_ts(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with microseconds, e.g. ``...T12:00:00.000000Z``."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now_ts() -> str:
    """The current time as an audit timestamp."""
    return format_ts(datetime.now(UTC))


def check_ts(value: str) -> str:
    """Validate an RFC 3339 UTC timestamp with exactly six fractional digits and ``Z``."""
    if not _TS.match(value):
        raise ValueError("timestamp must be RFC 3339 UTC with microseconds, e.g. 2025-01-31T09:30:00.000000Z")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def looks_like_token(value: str) -> bool:
    """Whether ``value`` holds something shaped like a JWT (which the trail never stores)."""
    return _JWT_LIKE.search(value) is not None


def _refuse_token(value: str) -> str:
    if looks_like_token(value):
        raise ValueError("looks like a token; record its jti, never the token")
    return value


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            raise ValueError("integers must be within +/-(2**53-1)")
        return
    if isinstance(value, str):
        _refuse_token(value)
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")
            _check_json(item, depth + 1)
        return
    # Floats have no single canonical JSON form across languages, so they are refused.
    raise ValueError(f"{type(value).__name__} values are not allowed (use str or int)")


class AuditData(BaseModel):
    """What was touched: document ids and/or a short description (no clinical content)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    document_ids: list[str] = Field(default_factory=list, max_length=1000)
    description: str | None = Field(default=None, max_length=500)

    @field_validator("description")
    @classmethod
    def _no_token(cls, value: str | None) -> str | None:
        return None if value is None else _refuse_token(value)


class AuditFields(BaseModel):
    """Everything an audit entry says, before it is linked into the chain."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    seq: int = Field(ge=1, le=_SAFE_INT)
    ts: str
    actor_id: str | None = Field(default=None, min_length=1, max_length=200)
    actor_role: str | None = Field(default=None, min_length=1, max_length=64)
    authority_jti: str | None = Field(default=None, min_length=1, max_length=200)
    patient_id: str | None = Field(default=None, min_length=1, max_length=200)
    data: AuditData = Field(default_factory=AuditData)
    action: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", max_length=64)
    outcome: Outcome
    purpose_of_use: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{1,31}$")
    device_id: str | None = Field(default=None, min_length=1, max_length=200)
    ip: str | None = Field(default=None, min_length=1, max_length=100)
    establishment: str | None = Field(default=None, min_length=1, max_length=200)
    request_id: str | None = Field(default=None, min_length=1, max_length=200)
    consultation_id: str | None = Field(default=None, min_length=1, max_length=200)
    detail: dict[str, Any] = Field(default_factory=dict)

    @field_validator("ts")
    @classmethod
    def _ts(cls, value: str) -> str:
        return check_ts(value)

    @field_validator("authority_jti")
    @classmethod
    def _jti(cls, value: str | None) -> str | None:
        return None if value is None else _refuse_token(value)

    @field_validator("detail")
    @classmethod
    def _detail(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value)
        if len(canonical_json(value)) > MAX_DETAIL_BYTES:
            raise ValueError(f"detail must stay under {MAX_DETAIL_BYTES} bytes")
        return value

    def payload(self) -> dict[str, Any]:
        """The JSON object that is hashed: all fields but ``entry_hash``, nulls omitted."""
        dumped = self.model_dump(mode="json", exclude={"entry_hash"})
        dumped["data"] = {k: v for k, v in dumped["data"].items() if v is not None}
        return {k: v for k, v in dumped.items() if v is not None}


class AuditEntry(AuditFields):
    """An audit entry linked into the chain."""

    prev_hash: str = Field(pattern=HASH_PATTERN)
    entry_hash: str = Field(pattern=HASH_PATTERN)

    def expected_hash(self) -> str:
        """Recompute this entry's hash from its contents."""
        return compute_entry_hash(self.prev_hash, self.payload())

    def is_intact(self) -> bool:
        """True when the stored ``entry_hash`` matches the contents."""
        return hmac.compare_digest(self.expected_hash(), self.entry_hash)

    def to_export(self) -> dict[str, Any]:
        """The entry as written to an export line (without the ``type`` key)."""
        return {**self.payload(), "entry_hash": self.entry_hash}


def compute_entry_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash's 32 bytes then the canonical JSON payload, as hex."""
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(canonical_json(dict(payload)))
    return digest.hexdigest()


def chain_entry(prev_hash: str, fields: AuditFields | Mapping[str, Any]) -> AuditEntry:
    """Link ``fields`` after the entry whose hash is ``prev_hash`` (GENESIS_HASH for seq 1)."""
    if not re.match(HASH_PATTERN, prev_hash):
        raise ValueError("prev_hash must be 64 lowercase hex characters")
    values = fields.model_dump() if isinstance(fields, AuditFields) else dict(fields)
    values.pop("entry_hash", None)
    values["prev_hash"] = prev_hash
    # Validate once without the hash, then compute it over exactly what was validated.
    unlinked = AuditEntry.model_validate({**values, "entry_hash": GENESIS_HASH})
    return unlinked.model_copy(update={"entry_hash": unlinked.expected_hash()})
