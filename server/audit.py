"""The one function every part of the server records audit events through.

``record_event`` appends to the records library's tamper-evident log (hash chain, signed
Merkle checkpoints; see ``records.audit``) in the caller's transaction: the event is
stored if and only if the caller commits. An event that cannot be recorded raises, so an
action is never carried out unaudited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from records.audit.log import EventFields, append_entry

log = logging.getLogger("telemed.audit")

# Outcome words some callers use for checks, mapped to the log's four outcomes.
_OUTCOMES = {
    "allowed": "allowed",
    "denied": "denied",
    "success": "success",
    "failure": "failure",
    "pass": "success",
    "ok": "success",
    "fail": "failure",
    "failed": "failure",
    "error": "failure",
    "refused": "denied",
    "rejected": "denied",
}
_MAX = {"id": 200, "role": 64, "ip": 100}
_ORIGIN_KEY = "telemed.request_origin"


@dataclass(frozen=True)
class RequestOrigin:
    """Where the request a session serves came from: its request id and client address."""

    request_id: str | None
    ip: str | None


def bind_request_origin(session: Session, origin: RequestOrigin) -> None:
    """Stamp every event recorded through ``session`` with the request's id and client address."""
    session.info[_ORIGIN_KEY] = origin


def request_origin(session: Session) -> RequestOrigin | None:
    """The request origin bound to ``session``, if it serves a request."""
    origin = session.info.get(_ORIGIN_KEY)
    return origin if isinstance(origin, RequestOrigin) else None


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def _json_safe(value: Any) -> Any:
    # The chain hashes canonical JSON, which has no portable float form: keep floats as text.
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return value


def record_event(
    *,
    session: Session,
    action: str,
    outcome: str,
    actor_id: str | None,
    actor_role: str | None,
    consultation_id: str | None = None,
    patient_id: str | None = None,
    device_id: str | None = None,
    authority_jti: str | None = None,
    purpose_of_use: str | None = None,
    data: str | None = None,
    ip: str | None = None,
    establishment: str | None = None,
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record one audit event (who did what, on what authority, with what outcome).

    ``ip`` and ``request_id`` default to the request origin bound to ``session``
    (:func:`bind_request_origin`, done for every request session), so an event recorded
    deep in a service still says where the request came from.
    """
    origin = request_origin(session)
    if origin is not None:
        ip = ip or origin.ip
        request_id = request_id or origin.request_id
    extra = _json_safe(dict(detail or {}))
    mapped = _OUTCOMES.get(outcome)
    if mapped is None:
        mapped, extra["result"] = "failure", outcome[:32]
    elif mapped != outcome:
        extra.setdefault("result", outcome)
    entry = append_entry(
        session=session,
        event=EventFields(
            action=action,
            outcome=mapped,
            actor_id=_clip(actor_id, _MAX["id"]),
            actor_role=_clip(actor_role, _MAX["role"]),
            authority_jti=_clip(authority_jti, _MAX["id"]),
            patient_id=_clip(patient_id, _MAX["id"]),
            description=_clip(data, 500),
            purpose_of_use=purpose_of_use,
            device_id=_clip(device_id, _MAX["id"]),
            ip=_clip(ip, _MAX["ip"]),
            establishment=_clip(establishment, _MAX["id"]),
            request_id=_clip(request_id, _MAX["id"]),
            consultation_id=_clip(consultation_id, _MAX["id"]),
            detail=extra,
        ),
    )
    log.info(
        "audit",
        extra={
            "action": action,
            "outcome": outcome,
            "actor_id": actor_id,
            "actor_role": actor_role,
            "consultation_id": consultation_id,
            "device_id": device_id,
            "authority_jti": authority_jti,
            "seq": entry.seq,
        },
    )
