"""Composes the records library's router with the server's plumbing.

``records`` never imports the server; this module gives it what it asks for: the signed-in
user as an ``Actor``, the device posture (``X-Posture-Token`` / ``X-Posture-Proof``,
verified by ``server.devices.posture``), a consultation lookup, a request-proof verifier
for grants (same replay cache as posture proofs), the specialist's join token, and the
vault loaded by ``server.records_runtime`` at startup. When the shared replay cache cannot
be reached the request is refused ``service_unavailable`` (503), never let through.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, col, select

from device_policy.errors import DevicePolicyError
from device_policy.errors import KeyBindingMismatch as ProofKeyMismatch
from device_policy.proof import verify_request_proof
from records.audit.fhir import FhirSystems
from records.decisions import Who, refuse
from records.errors import GrantInvalid, KeyBindingMismatch
from records.ports import Actor, ConsultationView, DevicePosture, Participant, PostureCheck
from records.router import RecordsContext, RecordsDeps, make_router, request_meta
from records.service_errors import AdminRequired
from server.consultations.join_tokens import verify_join_token
from server.consultations.models import Consultation, Invite
from server.db import utcnow
from server.deps import CurrentPrincipal, ServicesDep, SessionDep, get_session
from server.devices.posture import claimed_nonce, verify_posture
from server.errors import ServiceUnavailable, TelemedError
from server.identity.models import Role
from server.services import Services

__all__ = ["consultation_view", "records_router"]

_join_bearer = HTTPBearer(auto_error=False, description="Join token of a specialist in the call")


def consultation_view(session: Session, consultation_id: str) -> ConsultationView | None:
    """The consultation as records sees it: patient, host, state, end, invited specialists."""
    consultation = session.get(Consultation, consultation_id)
    if consultation is None:
        return None
    invites = session.exec(
        select(Invite.id).where(Invite.consultation_id == consultation.id, col(Invite.used_at).is_not(None))
    ).all()
    return ConsultationView(
        id=consultation.id,
        patient_id=consultation.patient_id,
        host_user_id=consultation.host_user_id,
        state=str(consultation.state.value if hasattr(consultation.state, "value") else consultation.state),
        scheduled_end=consultation.scheduled_end,
        room_device_id=consultation.room_device_id,
        specialist_participants=frozenset(f"specialist:{invite_id}" for invite_id in invites),
    )


class GrantProofVerifier:
    """Checks a grant's request proof with the device_policy proof format and the replay cache."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def __call__(self, *, proof: str, thumbprint: str, token_jti: str, method: str, url: str) -> None:
        now = utcnow()
        try:
            verify_request_proof(
                proof,
                expected_thumbprint=thumbprint,
                method=method,
                url=url,
                token_jti=token_jti,
                nonce=claimed_nonce(proof),
                now=now,
            )
        except ProofKeyMismatch:
            raise KeyBindingMismatch(
                "The request proof is signed by another device key than the grant's"
            ) from None
        except DevicePolicyError as exc:
            raise GrantInvalid(f"The request proof was refused ({exc.code})") from None
        if not self._services.proof_replay.first_use(proof, now=now):
            raise GrantInvalid("This request proof has already been used")


def _actor(principal: CurrentPrincipal) -> Actor:
    user = principal.user
    return Actor(
        user_id=user.id, role=user.role.value, establishment=user.establishment, token_jti=principal.jti
    )


def records_actor(principal: CurrentPrincipal) -> Actor:
    """The signed-in user, as records names an actor."""
    return _actor(principal)


def records_admin(request: Request, principal: CurrentPrincipal, session: SessionDep) -> Actor:
    """The signed-in admin; anyone else is refused, and the refusal is audited."""
    actor = _actor(principal)
    if principal.user.role is not Role.ADMIN:
        refuse(
            AdminRequired("This needs the role admin"),
            session=session,
            who=Who(actor_id=actor.user_id, actor_role=actor.role, establishment=actor.establishment),
            meta=request_meta(request),
            action="records.admin",
            detail={"path": request.url.path[:200]},
        )
    return actor


def records_posture(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    posture_token: Annotated[str | None, Header(alias="X-Posture-Token")] = None,
    posture_proof: Annotated[str | None, Header(alias="X-Posture-Proof")] = None,
) -> PostureCheck:
    """The device posture this request shows; a missing or refused token is reported, not raised."""
    if not posture_token:
        return PostureCheck(posture=None, failure="missing")
    if not posture_proof:
        return PostureCheck(posture=None, failure="proof_missing")
    try:
        context = verify_posture(
            services=services,
            session=session,
            token=posture_token,
            proof=posture_proof,
            method=request.method,
            url=str(request.url),
        )
    except ServiceUnavailable:
        # The check could not be made (Redis down): a 503 to retry, not a device failure.
        raise
    except (DevicePolicyError, TelemedError) as exc:
        return PostureCheck(posture=None, failure=str(exc.code))
    return PostureCheck(
        posture=DevicePosture(
            device_id=context.device_id,
            device_kind=context.device_kind.value,
            thumbprint=context.thumbprint,
            jti=context.jti,
        )
    )


def records_participant(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_join_bearer)],
) -> Participant:
    """The participant a bearer join token names (specialists reading shared documents)."""
    error: GrantInvalid | None = None
    if credentials is None or credentials.scheme.lower() != "bearer":
        error = GrantInvalid("Send your join token as 'Authorization: Bearer …'")
    else:
        try:
            claims = verify_join_token(jwt=services.jwt, token=credentials.credentials)
        except TelemedError as exc:
            error = GrantInvalid(f"The join token is not valid ({exc.code})")
    if error is not None:
        refuse(
            error,
            session=session,
            who=Who(actor_id=None, actor_role="specialist"),
            meta=request_meta(request),
            action="share.access",
        )
    return Participant(
        participant_id=claims.participant_id,
        consultation_id=claims.consultation_id,
        role=claims.role.value,
        jti=claims.jti,
    )


def records_context(services: ServicesDep) -> RecordsContext:
    """The records collaborators for this request."""
    runtime = services.records
    if runtime is None:  # pragma: no cover - Services.build always sets it
        raise RuntimeError("records runtime is not configured")
    settings = services.settings
    return RecordsContext(
        signer=services.jwt,
        lookup=consultation_view,
        verify_proof=GrantProofVerifier(services),
        vault=runtime.vault,
        max_document_bytes=settings.records_max_document_bytes,
        fhir=FhirSystems(base=settings.public_url.rstrip("/") + "/fhir"),
    )


def records_router(services: Services) -> APIRouter:
    """The records and audit API for this app; registers the key loading and checkpointer."""
    runtime = services.records
    if runtime is not None:
        services.extras.setdefault("startup", []).append(runtime.start)
        services.extras.setdefault("shutdown", []).append(runtime.stop)
    return make_router(
        RecordsDeps(
            session=get_session,
            actor=records_actor,
            admin=records_admin,
            posture=records_posture,
            participant=records_participant,
            context=records_context,
        )
    )
