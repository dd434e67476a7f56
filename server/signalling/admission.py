"""Getting in: join (or resume, or replace), and the host's say over who is in the call.

* Join: the join token says who and where; the consultation must be joinable; a device
  shows its posture. The participant's record is written (compare-and-set): the host is
  admitted, everyone else waits — unless a valid resume token, within the grace period,
  gives back the place it had. A newer socket for the same participant replaces the old.
  Every welcome (a resume's too) carries freshly minted TURN credentials.
* The host admits, denies (the denied socket is closed and its participant cannot come
  back on this consultation), returns to waiting, starts (through the consultation
  service: identity confirmed and consent recorded) and ends.
* Without its host a call does not go on: when the host leaves, the admitted wait again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

from server.signalling.attestation import Attestation
from server.signalling.connection import Connection
from server.signalling.context import HubContext
from server.signalling.ice import IceRenewal
from server.signalling.ports import AuditRecord, ConsultationFacts, JoinGrant, PostureGrant, Refusal
from server.signalling.presence import CONSULTATION_FIELD, ParticipantRecord, RecordStatus
from server.signalling.protocol import (
    Ack,
    Admit,
    CloseCode,
    Deny,
    End,
    ErrorCode,
    Hello,
    LimitsView,
    ReturnToWaiting,
    Start,
    Welcome,
)
from server.signalling.room import Room
from server.signalling.roster import CLOSED_STATES, UNCHANGED, Change, Roster, replace

log = logging.getLogger("telemed.signalling")


def hash_resume_token(token: str) -> str:
    """What presence keeps of a resume token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _closed(state: str) -> Refusal:
    return Refusal(
        ErrorCode.CONSULTATION_CLOSED, f'Cannot join in state "{state}"', close=CloseCode.CONSULTATION_CLOSED
    )


class Admission:
    """Join, resume, replace; admit, deny, return, start, end."""

    def __init__(self, ctx: HubContext, roster: Roster, attestation: Attestation, ice: IceRenewal) -> None:
        self.ctx = ctx
        self.roster = roster
        self.attestation = attestation
        self.ice = ice

    # --- join ------------------------------------------------------------------------------

    async def join(self, conn: Connection, hello: Hello) -> Room:
        """Authenticate and authorise a ``hello``; welcome the socket into its room (refusals audited)."""
        grant: JoinGrant | None = None
        facts: ConsultationFacts | None = None
        try:
            grant = await self.ctx.consultations.verify_join_token(hello.join_token)
            facts = await self.ctx.consultations.lookup(grant.consultation_id)
            if facts.state in CLOSED_STATES:
                raise _closed(facts.state)
            posture = await self.attestation.at_join(conn, grant, hello)
            if grant.role == "host":
                facts = await self.ctx.consultations.host_present(grant.consultation_id)
            return await self._join_room(conn, hello, grant, facts, posture)
        except Refusal as refusal:
            await self._refused(conn, refusal, grant, facts)
            if refusal.code is ErrorCode.SERVICE_UNAVAILABLE and refusal.close is None:
                # An outage (database, presence), not a verdict on this participant: try again later.
                refusal.close = CloseCode.TRY_AGAIN_LATER
            raise

    async def _refused(
        self, conn: Connection, refusal: Refusal, grant: JoinGrant | None, facts: ConsultationFacts | None
    ) -> None:
        """Audit a refused ``hello``: why, from where; the token's jti only once it verified."""
        if refusal.code is ErrorCode.AUDIT_UNAVAILABLE:
            return  # the log cannot be written: the refusal itself says so
        detail: dict[str, Any] = {"reason": refusal.code.value}
        if refusal.cause and refusal.cause != refusal.code.value:
            detail["cause"] = refusal.cause
        event = AuditRecord(
            action="signalling.join_refused",
            outcome="denied",
            actor_id=grant.participant_id if grant else None,
            actor_role=grant.role if grant else None,
            consultation_id=grant.consultation_id if grant else None,
            patient_id=facts.patient_id if facts else None,
            device_id=grant.device_id if grant else None,
            authority_jti=grant.jti if grant else None,
            ip=conn.ip,
            request_id=conn.request_id,
            detail=detail,
        )
        try:
            await self.ctx.audit.record(event)
        except Refusal:
            # Refused either way (fail closed); DbAudit has logged the failed write.
            log.error("a refused join could not be audited", extra={"reason": refusal.code.value})

    async def _join_room(
        self,
        conn: Connection,
        hello: Hello,
        grant: JoinGrant,
        facts: ConsultationFacts,
        posture: PostureGrant | None,
    ) -> Room:
        room = await self.roster.acquire(grant.consultation_id)
        try:
            room.patient_id = facts.patient_id
            if CONSULTATION_FIELD not in room.raw:
                room.state = facts.state
            if room.state in CLOSED_STATES:
                raise _closed(room.state)
            await self._enter(conn, room, grant, posture, hello.resume_token)
        except BaseException:
            await self.roster.release(room)
            raise
        return room

    async def _enter(
        self,
        conn: Connection,
        room: Room,
        grant: JoinGrant,
        posture: PostureGrant | None,
        offered_resume: str | None,
    ) -> None:
        resume_token = secrets.token_urlsafe(32)
        grace = self.ctx.limits.resume_grace.total_seconds()
        offered = hash_resume_token(offered_resume) if offered_resume else None
        resumed = False

        def mutate(current: ParticipantRecord | None) -> ParticipantRecord:
            nonlocal resumed
            if current is not None and current.status == "denied":
                raise Refusal(ErrorCode.FORBIDDEN, "The host has refused you", close=CloseCode.FORBIDDEN)
            resumed = bool(
                offered is not None
                and current is not None
                and hmac.compare_digest(offered, current.resume_hash)
                and (current.connected or time.time() - current.since <= grace)
            )
            status: RecordStatus = "waiting"
            if grant.role == "host":
                status = "admitted"
            elif resumed and current is not None and current.status != "suspended":
                # A suspended device that resumes has just shown a fresh posture: it waits.
                status = current.status
            return ParticipantRecord(
                id=grant.participant_id,
                role=grant.role,
                name=grant.name,
                status=status,
                device_id=grant.device_id,
                node=self.ctx.node_id,
                conn=conn.id,
                connected=True,
                resume_hash=hash_resume_token(resume_token),
                since=time.time(),
                join_jti=grant.jti,
            )

        change = await self.roster.update(room, grant.participant_id, mutate)
        assert change is not None and change.new is not None  # noqa: S101 - mutate always writes
        try:
            # Committed before anyone hears of the join; without it the join is undone.
            await self.ctx.record(
                "signalling.joined",
                room,
                actor=change.new,
                conn=conn,
                detail={"resumed": resumed, "status": change.new.status},
            )
        except Refusal:
            await self._undo(room, change, conn.id)
            raise
        conn.grant = grant
        conn.posture = posture
        previous = room.local.get(grant.participant_id)
        if previous is not None and previous is not conn:
            replace(previous)
        room.local[grant.participant_id] = conn
        room.refs += 1
        timer = room.grace_timers.pop(grant.participant_id, None)
        if timer is not None:
            timer.cancel()
            room.refs -= 1
        record = change.new
        conn.send(self._welcome(conn, room, record, grant, posture, resumed, resume_token).wire())
        await self.roster.announce(room, "resumed" if resumed else "joined", change, reason=None, skip=conn)
        self.attestation.watch(conn, room)
        self.ice.watch(conn, room)
        log.info(
            "participant joined",
            extra={
                "consultation_id": room.id,
                "participant": record.id,
                "resumed": resumed,
                "jti": grant.jti,
            },
        )

    async def _undo(self, room: Room, change: Change, conn_id: str) -> None:
        """Put a participant's record back as it was before ``change`` (its audit entry failed)."""
        new = change.new

        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or new is None or current.conn != conn_id or current.status != new.status:
                return UNCHANGED  # someone changed it since: theirs stands
            return change.old

        try:
            await self.roster.update(room, new.id if new else "", mutate)
        except Refusal:
            log.error("could not undo an unaudited change", extra={"consultation_id": room.id})

    def _welcome(
        self,
        conn: Connection,
        room: Room,
        record: ParticipantRecord,
        grant: JoinGrant,
        posture: PostureGrant | None,
        resumed: bool,
        resume_token: str,
    ) -> Welcome:
        limits = self.ctx.limits
        ice = self.ice.issue(conn, grant)
        return Welcome(
            participant_id=grant.participant_id,
            role=grant.role,
            name=grant.name,
            consultation_id=room.id,
            consultation_state=room.state,
            status=record.status if record.status != "denied" else "waiting",
            resumed=resumed,
            resume_token=resume_token,
            resume_grace_s=int(limits.resume_grace.total_seconds()),
            ice_servers=ice.servers,
            ice_policy=ice.policy,
            participants=room.roster_for(record),
            limits=LimitsView(
                max_message_bytes=limits.max_message_bytes, rate_per_s=limits.rate_per_s, burst=limits.burst
            ),
            posture_expires_at=int(posture.expires_at) if posture else None,
            ice_expires_at=int(ice.expires_at) if ice.expires_at is not None else None,
        )

    # --- the host's commands ---------------------------------------------------------------

    def _host(self, conn: Connection, room: Room, action: str) -> ParticipantRecord:
        me = room.records.get(conn.participant_id)
        if me is None or me.role != "host":
            raise Refusal(ErrorCode.NOT_HOST, f"Only the host may {action}")
        if me.status == "suspended":
            raise Refusal(ErrorCode.SUSPENDED, f'Cannot {action} in status "suspended"')
        return me

    async def _set_status(
        self, room: Room, participant_id: str, *, allowed: frozenset[str], to: RecordStatus, action: str
    ) -> Change:
        def mutate(current: ParticipantRecord | None) -> Any:
            if current is None or current.status == "denied":
                raise Refusal(
                    ErrorCode.UNKNOWN_PARTICIPANT, f'No participant "{participant_id}" in this consultation'
                )
            if current.role == "host":
                raise Refusal(ErrorCode.INVALID_STATE, f"Cannot {action} the host")
            if current.status not in allowed:
                raise Refusal(ErrorCode.INVALID_STATE, f'Cannot {action} in status "{current.status}"')
            return current.evolve(status=to, since=time.time())

        change = await self.roster.update(room, participant_id, mutate)
        assert change is not None  # noqa: S101 - mutate writes or raises
        return change

    async def admit(self, conn: Connection, room: Room, message: Admit) -> None:
        """Host: waiting → admitted."""
        host = self._host(conn, room, "admit")
        change = await self._set_status(
            room, message.participant, allowed=frozenset({"waiting"}), to="admitted", action="admit"
        )
        await self._audited(conn, room, "admitted", host, change)
        await self.roster.announce(room, "admitted", change, reason=None)
        self._ack(conn, message.id)

    async def deny(self, conn: Connection, room: Room, message: Deny) -> None:
        """Host: refuse a waiting (or suspended) participant for good."""
        host = self._host(conn, room, "deny")
        change = await self._set_status(
            room, message.participant, allowed=frozenset({"waiting", "suspended"}), to="denied", action="deny"
        )
        await self._audited(conn, room, "denied", host, change)
        await self.roster.announce(room, "denied", change, reason=message.reason)
        self._ack(conn, message.id)

    async def return_to_waiting(self, conn: Connection, room: Room, message: ReturnToWaiting) -> None:
        """Host: admitted → waiting."""
        host = self._host(conn, room, "return to waiting")
        change = await self._set_status(
            room,
            message.participant,
            allowed=frozenset({"admitted"}),
            to="waiting",
            action="return to waiting",
        )
        await self._audited(conn, room, "returned", host, change)
        await self.roster.announce(room, "returned", change, reason=message.reason or "returned_by_host")
        self._ack(conn, message.id)

    async def start(self, conn: Connection, room: Room, message: Start) -> None:
        """Host: the consultation goes live (the consultation service checks identity and consent)."""
        host = self._host(conn, room, "start")
        assert conn.grant is not None and conn.grant.user_id is not None  # noqa: S101 - a joined host
        audit = self.ctx.audit_record("signalling.started", room, actor=host, conn=conn)
        facts = await self.ctx.consultations.start(room.id, conn.grant.user_id, audit)
        await self.roster.set_state(room, facts.state, reason=None)
        self._ack(conn, message.id)

    async def end(self, conn: Connection, room: Room, message: End) -> None:
        """Host: end the consultation; every socket is told and closed (4410)."""
        host = self._host(conn, room, "end")
        reason = message.reason or "ended by host"
        assert conn.grant is not None  # noqa: S101 - joined
        audit = self.ctx.audit_record(
            "signalling.ended", room, actor=host, conn=conn, detail={"reason": reason}
        )
        # The entry commits with the consultation's end (one transaction), before anyone hears of it.
        await self.ctx.consultations.end(room.id, conn.grant.user_id, reason, audit)
        # The ack goes out between the host's consultation.ended and its close (4410).
        ack = (conn, Ack(ref=message.id).wire()) if message.id else None
        await self.roster.set_state(room, "ended", reason=reason, ack=ack)
        await self.roster.clear(room)

    async def _audited(
        self, conn: Connection, room: Room, what: str, host: ParticipantRecord, change: Change
    ) -> None:
        """Commit the host's decision to the audit log before anyone hears of it; undo it if that fails."""
        subject = change.new or change.old
        try:
            await self.ctx.record(
                f"signalling.{what}",
                room,
                actor=host,
                conn=conn,
                detail={"participant": subject.id if subject else None},
            )
        except Refusal:
            await self._undo(room, change, subject.conn if subject else "")
            raise

    @staticmethod
    def _ack(conn: Connection, ref: str | None) -> None:
        if ref:
            conn.send(Ack(ref=ref).wire())

    async def host_gone(self, room: Room) -> None:
        """The host left: the admitted go back to waiting."""
        for record in list(room.records.values()):
            if record.role == "host" or record.status != "admitted":
                continue
            try:
                change = await self._set_status(
                    room, record.id, allowed=frozenset({"admitted"}), to="waiting", action="return to waiting"
                )
            except Refusal:
                continue
            await self.roster.announce(room, "returned", change, reason="host_left")
