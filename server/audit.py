"""The one function every part of the server records audit events through.

INTERIM: until the records library's tamper-evident log is wired in (issue 5), events go
to the ``telemed.audit`` logger only. The records work replaces the body of
``record_event`` so every caller's events land in the hash-chained log without any
caller changing.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session

log = logging.getLogger("telemed.audit")


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
    """Record one audit event (who did what, on what authority, with what outcome)."""
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
        },
    )
