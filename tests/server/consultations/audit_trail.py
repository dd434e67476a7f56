"""Read the audit events the consultations feature recorded.

The one place the tests learn what was audited: the records library's hash-chained log in
the database, so an event counts only if its transaction was committed (refusals included).
"""

from __future__ import annotations

from dataclasses import dataclass

from records.audit.log import iter_entries
from server.db import session_scope
from server.services import Services


@dataclass(frozen=True)
class Seen:
    """One audit event as the tests compare it."""

    action: str
    outcome: str
    actor_id: str | None
    consultation_id: str | None
    patient_id: str | None
    reason: str | None
    request_id: str | None = None
    ip: str | None = None
    detail: dict[str, object] | None = None


class AuditTrail:
    """The consultation events in the audit log (the database is fresh for every test)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def events(self, *, consultation_id: str | None = None) -> list[Seen]:
        """``consultation.*`` events in the order recorded, optionally only those of one consultation."""
        with session_scope(self._services.engine) as session:
            seen = [
                Seen(
                    action=e.action,
                    outcome=e.outcome,
                    actor_id=e.actor_id,
                    consultation_id=e.consultation_id,
                    patient_id=e.patient_id,
                    reason=e.detail.get("reason"),
                    request_id=e.request_id,
                    ip=e.ip,
                    detail=dict(e.detail),
                )
                for e in iter_entries(session=session)
                if e.action.startswith("consultation.")
            ]
        if consultation_id is not None:
            seen = [s for s in seen if s.consultation_id == consultation_id]
        return seen

    def actions(self, *, consultation_id: str | None = None) -> list[tuple[str, str]]:
        """(action, outcome) pairs in order."""
        return [(s.action, s.outcome) for s in self.events(consultation_id=consultation_id)]
