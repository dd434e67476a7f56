"""What the hub needs from the rest of the server, as small protocols, and the real adapters.

The hub never touches the database itself. It asks:

* :class:`Consultations` — verify a join token; look a consultation up; mark the host
  present, start, end (``server.consultations``);
* :class:`PostureVerifier` — verify a posture token and its proof (``server.devices.posture``);
* :class:`AuditSink` — record an event durably before the hub answers (``server.audit``);
* :class:`IceProvider` — ICE servers and policy for a participant, fresh TURN credentials
  each time it is asked (``server.turn``).

Every adapter runs its database work in a worker thread, so the event loop never blocks,
and turns the server's errors into a :class:`Refusal` with a protocol error code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from device_policy.errors import DevicePolicyError
from server.audit import RequestOrigin, bind_request_origin, record_event
from server.consultations import service as consultation_service
from server.consultations.join_tokens import verify_join_token
from server.consultations.models import Consultation
from server.errors import (
    AccessDenied,
    AuthenticationRequired,
    InvalidState,
    NotFound,
    ServiceUnavailable,
    TelemedError,
    is_database_unavailable,
)
from server.settings import Settings
from server.signalling.protocol import CloseCode, ConsultationState, ErrorCode, IceServerView, Role
from server.turn import (
    REFRESH_LEAD,
    EndpointKind,
    TurnCredentialError,
    ice_policy_for,
    refresh_time,
    turn_credentials,
)

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("telemed.signalling")
T = TypeVar("T")


class Refusal(Exception):
    """The hub refuses a request: a protocol error code, a message, maybe a close code."""

    def __init__(
        self, code: ErrorCode, message: str, *, close: CloseCode | None = None, cause: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close
        # The server's own code behind it (token_expired, wrong_audience, device_revoked…), for the audit.
        self.cause = cause


def audit_unavailable() -> Refusal:
    """The refusal for an action whose audit entry could not be written: it did not happen."""
    return Refusal(
        ErrorCode.AUDIT_UNAVAILABLE,
        "The audit log cannot be written now, so this was not done; try again",
        close=CloseCode.TRY_AGAIN_LATER,
    )


@dataclass(frozen=True)
class JoinGrant:
    """A verified join token: who, in which consultation, as what."""

    participant_id: str
    consultation_id: str
    role: Role
    name: str
    device_id: str | None
    jti: str
    expires_at: float

    @property
    def user_id(self) -> str | None:
        """The host's user id (hosts only)."""
        return self.participant_id.split(":", 1)[1] if self.role == "host" else None


@dataclass(frozen=True)
class ConsultationFacts:
    """What the hub needs to know about a consultation."""

    id: str
    state: ConsultationState
    patient_id: str
    host_user_id: str


@dataclass(frozen=True)
class PostureGrant:
    """A verified posture token: which device, until when."""

    device_id: str
    device_kind: str
    jti: str
    expires_at: float


@dataclass(frozen=True)
class AuditRecord:
    """One signalling event for the audit trail."""

    action: str
    outcome: Literal["success", "denied"]
    actor_id: str | None
    actor_role: str | None
    consultation_id: str | None
    patient_id: str | None = None
    device_id: str | None = None
    authority_jti: str | None = None
    ip: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] | None = None


class Consultations(Protocol):
    """The consultation service as the hub uses it."""

    async def verify_join_token(self, token: str) -> JoinGrant:
        """Verify a join token (raise :class:`Refusal` 4401 when it is not good)."""
        ...

    async def lookup(self, consultation_id: str) -> ConsultationFacts:
        """The consultation (raise :class:`Refusal` 4404 when there is none)."""
        ...

    async def host_present(self, consultation_id: str) -> ConsultationFacts:
        """The host's socket is authenticated: scheduled → open."""
        ...

    async def start(
        self, consultation_id: str, by_user_id: str, audit: AuditRecord | None = None
    ) -> ConsultationFacts:
        """open → live (identity confirmed and consent recorded); ``audit`` in the same transaction."""
        ...

    async def end(
        self, consultation_id: str, by_user_id: str | None, reason: str, audit: AuditRecord | None = None
    ) -> ConsultationFacts:
        """→ ended; ``audit`` in the same transaction."""
        ...


class PostureVerifier(Protocol):
    """Checks a device's posture token and the proof that it holds the device key."""

    async def verify(self, *, token: str, proof: str | None, url: str, nonce: str) -> PostureGrant:
        """Verify (raise :class:`Refusal` ``posture_refused`` when it is not good)."""
        ...


class AuditSink(Protocol):
    """Writes audit events durably: :meth:`record` returns once the event is committed."""

    async def record(self, event: AuditRecord) -> None:
        """Write one event (raise :func:`audit_unavailable`'s refusal when it cannot be written)."""
        ...

    async def start(self) -> None:
        """Get ready to write."""
        ...

    async def close(self) -> None:
        """Stop (nothing is ever left queued: every write was awaited)."""
        ...


@dataclass(frozen=True)
class IceGrant:
    """ICE servers for one participant, and when their TURN credentials expire and are renewed.

    ``expires_at`` and ``refresh_at`` (Unix time, s) are None when there are no credentials
    to renew (no TURN configured, or minting failed).
    """

    servers: list[IceServerView]
    policy: Literal["relay", "all"]
    expires_at: float | None = None
    refresh_at: float | None = None


class IceProvider(Protocol):
    """ICE servers (TURN credentials) and transport policy for one participant."""

    def for_participant(self, participant_id: str, role: Role) -> IceGrant:
        """Fresh ``ice_servers`` and the ``ice_policy`` (for a ``welcome`` or an ``ice_servers`` update)."""
        ...


# --- adapters ---------------------------------------------------------------------------


@contextlib.contextmanager
def _audited_scope(engine: Engine) -> Iterator[Session]:
    """Commit on success, and on a refusal too: services record their refusals as audit events."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
        except (AccessDenied, InvalidState, NotFound):
            session.commit()
            raise
        except BaseException:
            session.rollback()
            raise
        session.commit()


def _facts(consultation: Consultation) -> ConsultationFacts:
    return ConsultationFacts(
        id=consultation.id,
        state=consultation.state.value,
        patient_id=consultation.patient_id,
        host_user_id=consultation.host_user_id,
    )


def _refusal(exc: TelemedError) -> Refusal:
    """The protocol's words for a server error (messages name states, never secrets)."""
    refusal = _protocol_refusal(exc)
    refusal.cause = exc.code
    return refusal


def _protocol_refusal(exc: TelemedError) -> Refusal:
    if isinstance(exc, AuthenticationRequired):
        return Refusal(ErrorCode.UNAUTHENTICATED, exc.detail, close=CloseCode.UNAUTHENTICATED)
    if isinstance(exc, NotFound):
        return Refusal(ErrorCode.CONSULTATION_NOT_FOUND, exc.detail, close=CloseCode.CONSULTATION_NOT_FOUND)
    if isinstance(exc, InvalidState):
        return Refusal(ErrorCode.INVALID_STATE, exc.detail)
    if isinstance(exc, AccessDenied):
        return Refusal(ErrorCode.FORBIDDEN, exc.detail, close=CloseCode.FORBIDDEN)
    if isinstance(exc, ServiceUnavailable):
        return Refusal(ErrorCode.SERVICE_UNAVAILABLE, exc.detail, close=CloseCode.TRY_AGAIN_LATER)
    return Refusal(ErrorCode.INTERNAL_ERROR, "The server could not do that", close=CloseCode.INTERNAL_ERROR)


def database_unavailable() -> Refusal:
    """The refusal while the database cannot be reached: nothing changed, nothing was audited.

    No close code of its own: mid-call the socket (and the call) stays; a ``hello`` refused
    this way closes 1013 (try again later), like any ``service_unavailable`` hello.
    """
    return Refusal(
        ErrorCode.SERVICE_UNAVAILABLE,
        "The database cannot be reached now, so this was not done; try again",
        cause="database_unavailable",
    )


class DbConsultations:
    """:class:`Consultations` over ``server.consultations``, in worker threads."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await run_in_threadpool(work)
        except _AuditWriteFailed:
            raise audit_unavailable() from None
        except TelemedError as exc:
            raise _refusal(exc) from None
        except DBAPIError as exc:
            if is_database_unavailable(exc):
                raise database_unavailable() from None
            raise

    async def verify_join_token(self, token: str) -> JoinGrant:
        def work() -> JoinGrant:
            claims = verify_join_token(jwt=self._services.jwt, token=token)
            return JoinGrant(
                participant_id=claims.participant_id,
                consultation_id=claims.consultation_id,
                role=claims.role.value,
                name=claims.name,
                device_id=claims.device_id,
                jti=claims.jti,
                expires_at=claims.expires_at.timestamp(),
            )

        return await self._run(work)

    def _with(
        self,
        consultation_id: str,
        action: Callable[[Session, Consultation], Consultation],
        audit: AuditRecord | None = None,
    ) -> ConsultationFacts:
        with _audited_scope(self._services.engine) as session:
            if audit is not None:
                # The consultation's own entry says where the host's socket is, like the hub's.
                bind_request_origin(session, RequestOrigin(request_id=audit.request_id, ip=audit.ip))
            consultation = consultation_service.get_consultation(
                session=session, consultation_id=consultation_id
            )
            facts = _facts(action(session, consultation))
            if audit is not None:
                # The hub's entry commits with the state change, or neither does.
                write_audit_record(session=session, event=audit)
            return facts

    async def lookup(self, consultation_id: str) -> ConsultationFacts:
        return await self._run(lambda: self._with(consultation_id, lambda s, c: c))

    async def host_present(self, consultation_id: str) -> ConsultationFacts:
        return await self._run(
            lambda: self._with(
                consultation_id,
                lambda s, c: consultation_service.mark_host_present(session=s, consultation=c),
            )
        )

    async def start(
        self, consultation_id: str, by_user_id: str, audit: AuditRecord | None = None
    ) -> ConsultationFacts:
        return await self._run(
            lambda: self._with(
                consultation_id,
                lambda s, c: consultation_service.start_consultation(
                    session=s, consultation=c, by_user_id=by_user_id
                ),
                audit,
            )
        )

    async def end(
        self, consultation_id: str, by_user_id: str | None, reason: str, audit: AuditRecord | None = None
    ) -> ConsultationFacts:
        return await self._run(
            lambda: self._with(
                consultation_id,
                lambda s, c: consultation_service.end_consultation(
                    session=s, consultation=c, by_user_id=by_user_id, reason=reason
                ),
                audit,
            )
        )


class DevicePosture:
    """:class:`PostureVerifier` over ``server.devices.posture.verify_posture`` (method ``WS``)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def verify(self, *, token: str, proof: str | None, url: str, nonce: str) -> PostureGrant:
        from server.devices.posture import verify_posture

        def work() -> PostureGrant:
            with Session(self._services.engine, expire_on_commit=False) as session:
                try:
                    context = verify_posture(
                        services=self._services,
                        session=session,
                        token=token,
                        proof=proof,
                        method="WS",
                        url=url,
                        nonce=nonce,
                    )
                except DevicePolicyError as exc:
                    if 400 <= exc.status < 500:
                        session.commit()  # a refusal's audit entry (e.g. a revoked device)
                    raise
                session.commit()
            return PostureGrant(
                device_id=context.device_id,
                device_kind=context.device_kind.value,
                jti=context.jti,
                expires_at=context.expires_at.timestamp(),
            )

        try:
            return await run_in_threadpool(work)
        except (DevicePolicyError, TelemedError) as exc:
            # The library's code (posture_token_expired, key_binding_mismatch…) says what to fix.
            raise Refusal(
                ErrorCode.POSTURE_REFUSED,
                f"{exc.code}: {exc.detail}",
                close=CloseCode.FORBIDDEN,
                cause=exc.code,
            ) from None
        except DBAPIError as exc:
            # Not the device's fault: its current posture stands until it lapses.
            if is_database_unavailable(exc):
                raise database_unavailable() from None
            raise


class _AuditWriteFailed(Exception):
    """An audit entry could not be written (the database said no): the action must not stand."""


def write_audit_record(*, session: Session, event: AuditRecord) -> None:
    """Add one signalling event to the audit log in ``session``'s transaction."""
    try:
        record_event(
            session=session,
            action=event.action,
            outcome=event.outcome,
            actor_id=event.actor_id,
            actor_role=event.actor_role,
            consultation_id=event.consultation_id,
            patient_id=event.patient_id,
            device_id=event.device_id,
            authority_jti=event.authority_jti,
            purpose_of_use="TREAT",
            ip=event.ip,
            request_id=event.request_id,
            detail=event.detail,
        )
        session.flush()
    except Exception as exc:
        raise _AuditWriteFailed(event.action) from exc


class DbAudit:
    """:class:`AuditSink` that commits each event through ``server.audit.record_event`` before returning.

    The write runs in a worker thread so the event loop never blocks, but the caller awaits
    it: nothing is queued, so nothing is lost if the process dies, and a write that fails
    is a refusal (``audit_unavailable``) that the hub turns into an answer, never a log line.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def record(self, event: AuditRecord) -> None:
        try:
            await run_in_threadpool(self._write, event)
        except Exception:
            # Only the action: the detail may name participants.
            log.error("could not record a signalling audit event", extra={"action": event.action})
            raise audit_unavailable() from None

    def _write(self, event: AuditRecord) -> None:
        with Session(self._engine, expire_on_commit=False) as session:
            write_audit_record(session=session, event=event)
            session.commit()


_ENDPOINTS: dict[Role, EndpointKind] = {
    "host": EndpointKind.PRISON_LAPTOP,
    "room": EndpointKind.ROOM_ENDPOINT,
    "specialist": EndpointKind.SPECIALIST_BROWSER,
}


@dataclass
class TurnIce:
    """:class:`IceProvider` from the settings: coturn ``use-auth-secret`` credentials per participant.

    Without TURN configured (the loopback default) there is no relay to insist on, so
    outside production the policy becomes ``all``; in production ``relay`` stands and a
    prison endpoint fails loudly (``relay_unavailable``) rather than leak its address.
    Credentials live ``TELEMED_TURN_TTL``; the hub hands out fresh ones at ``refresh_at``
    (``refresh_lead`` before expiry, or a third of a short TTL).
    """

    settings: Settings
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    refresh_lead: timedelta = REFRESH_LEAD

    def for_participant(self, participant_id: str, role: Role) -> IceGrant:
        policy = ice_policy_for(_ENDPOINTS[role])
        secret = self.settings.turn_secret
        if not self.settings.turn_urls or secret is None:
            production = self.settings.environment.value == "production"
            return IceGrant(servers=[], policy=policy if production else "all")
        try:
            creds = turn_credentials(
                secret=secret.get_secret_value().encode(),
                # coturn reads everything before the first ":" as the expiry.
                participant_id=participant_id.replace(":", "."),
                ttl=self.settings.turn_ttl,
                now=self.clock(),
                urls=list(self.settings.turn_urls),
            )
        except TurnCredentialError:
            log.exception("cannot mint TURN credentials")
            return IceGrant(servers=[], policy=policy)
        return IceGrant(
            servers=[IceServerView(urls=creds.urls, username=creds.username, credential=creds.credential)],
            policy=policy,
            expires_at=float(creds.expires_at),
            refresh_at=refresh_time(
                expires_at=creds.expires_at, ttl=self.settings.turn_ttl, lead=self.refresh_lead
            ),
        )
