"""What every part of the hub shares: its collaborators, and the small helpers they all use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.ops.metrics import Metrics
from server.signalling.bus import Bus
from server.signalling.limits import SignallingLimits
from server.signalling.ports import AuditRecord, AuditSink, Consultations, IceProvider, PostureVerifier
from server.signalling.presence import ParticipantRecord, Presence

if TYPE_CHECKING:
    from server.signalling.connection import Connection
    from server.signalling.room import Room

log = logging.getLogger("telemed.signalling")


@dataclass
class HubContext:
    """The hub's collaborators and identity, passed to each of its parts."""

    node_id: str
    prefix: str
    limits: SignallingLimits
    bus: Bus
    presence: Presence
    consultations: Consultations
    posture: PostureVerifier
    audit: AuditSink
    ice: IceProvider
    metrics: Metrics | None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _counters: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def control_channel(self) -> str:
        """The bus channel every node listens on (suspend a device, a consultation ended)."""
        return f"{self.prefix}:sig:ctl"

    def room_channel(self, consultation_id: str) -> str:
        """The bus channel of one consultation."""
        return f"{self.prefix}:sig:c:{consultation_id}"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; failures are logged, never lost."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def spawn_later(self, delay: float, make: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.TimerHandle:
        """Run ``make()`` after ``delay`` s (the coroutine is only created if the timer fires)."""
        return asyncio.get_running_loop().call_later(delay, lambda: self.spawn(make()))

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("signalling task failed", exc_info=task.exception())

    def count(self, kind: str, outcome: str) -> None:
        """Count one message by type and outcome (``telemed_signalling_messages_total``)."""
        if self.metrics is None:
            return
        key = (kind, outcome)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.metrics.ws_messages.labels(kind, outcome)
        child.inc()

    def audit_record(
        self,
        action: str,
        room: Room,
        *,
        actor: ParticipantRecord | None,
        conn: Connection | None = None,
        subject: ParticipantRecord | None = None,
        denied: bool = False,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """One audit event about ``room``, not yet written (to write it with a state change)."""
        about = actor or subject
        authority: str | None
        if conn is not None and conn.grant is not None:
            authority = conn.grant.jti
        else:
            authority = about.join_jti if about else None
        return AuditRecord(
            action=action,
            outcome="denied" if denied else "success",
            actor_id=actor.id if actor else None,
            actor_role=actor.role if actor else "system",
            consultation_id=room.id,
            patient_id=room.patient_id,
            device_id=about.device_id if about else None,
            authority_jti=authority,
            ip=conn.ip if conn else None,
            request_id=conn.request_id if conn else None,
            detail=detail,
        )

    async def record_standing(
        self,
        action: str,
        room: Room,
        *,
        actor: ParticipantRecord | None,
        conn: Connection | None = None,
        subject: ParticipantRecord | None = None,
        denied: bool = False,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write the entry of a change that stands even unaudited (it only takes rights away).

        A suspension or a departure cannot be refused (nobody asked; refusing would keep a
        participant in the call): it happens, and a failed write is logged as an error and
        counted in ``telemed_signalling_messages_total{type="audit",outcome="audit_unavailable"}``.
        """
        try:
            await self.record(
                action, room, actor=actor, conn=conn, subject=subject, denied=denied, detail=detail
            )
        except Exception:
            self.count("audit", "audit_unavailable")
            log.error("a signalling change stands without its audit entry", extra={"action": action})

    async def record(
        self,
        action: str,
        room: Room,
        *,
        actor: ParticipantRecord | None,
        conn: Connection | None = None,
        subject: ParticipantRecord | None = None,
        denied: bool = False,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write one audit event about ``room``; returns once it is committed.

        Raises the ``audit_unavailable`` :class:`Refusal` when it cannot be written: callers
        write before they answer, and undo or refuse rather than act unaudited.
        """
        await self.audit.record(
            self.audit_record(
                action, room, actor=actor, conn=conn, subject=subject, denied=denied, detail=detail
            )
        )
