"""Read the audit events the consultations feature recorded.

The one place the tests learn what was audited. While ``server.audit.record_event`` only
logs (``telemed.audit``), the events are read from the captured log records; when it writes
the records library's hash-chained log instead, point ``events`` at that log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Seen:
    """One audit event as the tests compare it."""

    action: str
    outcome: str
    actor_id: str | None
    consultation_id: str | None


class AuditTrail:
    """The audit events recorded since the test started."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        caplog.set_level(logging.INFO, logger="telemed.audit")

    def events(self, *, consultation_id: str | None = None) -> list[Seen]:
        """Events in the order recorded, optionally only those of one consultation."""
        seen = [
            Seen(
                action=getattr(r, "action", ""),
                outcome=getattr(r, "outcome", ""),
                actor_id=getattr(r, "actor_id", None),
                consultation_id=getattr(r, "consultation_id", None),
            )
            for r in self._caplog.records
            if r.name == "telemed.audit"
        ]
        if consultation_id is not None:
            seen = [s for s in seen if s.consultation_id == consultation_id]
        return seen

    def actions(self, *, consultation_id: str | None = None) -> list[tuple[str, str]]:
        """(action, outcome) pairs in order."""
        return [(s.action, s.outcome) for s in self.events(consultation_id=consultation_id)]
