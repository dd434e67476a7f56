"""Record grants: short JWTs that let the host of a live consultation read one patient's records.

Claims (audience ``telemed-records``)::

    sub           user id of the clinician
    patient       patient id          consultation   consultation id (null for break-glass)
    cnf           {"jkt": thumbprint of the device key}  -- the grant only works with that key
    scope         "documents:read notes:write" (break-glass: "documents:read")
    purpose       TREAT (break-glass: ETREAT)
    kind          consultation | break_glass
    device        device id           jti, iat, nbf, exp, iss, aud

Rules: only the host, only while the consultation is live, only on a compliant prison
laptop (never a room endpoint); ``exp`` = min(now + 5 min, scheduled end). Renewable
while live; every grant of a consultation is revoked the moment it ends, and every grant
held on a device the moment that device is revoked or fails a posture check. Using a grant
needs the signed-in user it names and a request proof by the device key in ``cnf``.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import update
from sqlmodel import Session, col, select

from records.decisions import Who, allow, refuse
from records.errors import (
    ConsultationNotLive,
    GrantError,
    GrantExpired,
    GrantInvalid,
    GrantRevoked,
    KeyBindingMismatch,
    NoPosture,
    NotHost,
    RoomEndpointForbidden,
    WrongAudience,
)
from records.models import DocumentShare, RecordGrant
from records.ports import (
    Actor,
    ConsultationLookup,
    DevicePosture,
    PostureCheck,
    ProofVerifier,
    RequestMeta,
    TokenSigner,
)

__all__ = [
    "BREAK_GLASS_SCOPE",
    "CONSULTATION_SCOPE",
    "GRANT_AUDIENCE",
    "GRANT_TTL",
    "ActiveGrant",
    "GrantClaims",
    "IssuedGrant",
    "authorize_grant",
    "issue_grant",
    "renew_grant",
    "revoke_consultation_grants",
    "revoke_device_grants",
    "revoke_grant",
]

GRANT_AUDIENCE = "telemed-records"
GRANT_TTL = timedelta(minutes=5)
CONSULTATION_SCOPE = "documents:read notes:write"
BREAK_GLASS_SCOPE = "documents:read"
ROOM_ENDPOINT = "room_endpoint"
LIVE = "live"
# JWT times are whole seconds and the signer reads its own clock: keep a margin so that
# the signed exp can never land after the consultation's scheduled end.
_EXP_MARGIN = timedelta(seconds=1)
_MIN_TTL = timedelta(seconds=5)


class Confirmation(BaseModel):
    """RFC 7800 ``cnf`` by JWK thumbprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jkt: str = Field(min_length=1, max_length=64)


class GrantClaims(BaseModel):
    """The claims of a verified record grant."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str = Field(min_length=1)
    aud: str
    jti: str = Field(min_length=1, max_length=64)
    exp: int
    patient: str = Field(min_length=1)
    consultation: str | None = None
    cnf: Confirmation
    scope: str
    purpose: str
    kind: str
    device: str

    @property
    def scopes(self) -> frozenset[str]:
        """The scope as a set."""
        return frozenset(self.scope.split())

    @property
    def expires_at(self) -> datetime:
        """When the grant stops working."""
        return datetime.fromtimestamp(self.exp, UTC)


@dataclass(frozen=True)
class IssuedGrant:
    """A freshly signed grant and its claims."""

    token: str
    claims: GrantClaims


@dataclass(frozen=True)
class ActiveGrant:
    """A grant that verified for this request: who may do what for which patient."""

    claims: GrantClaims
    actor: Actor
    device_id: str

    @property
    def who(self) -> Who:
        """The grant holder, as the audit log names them."""
        return Who(
            actor_id=self.actor.user_id,
            actor_role=self.actor.role,
            establishment=self.actor.establishment,
            device_id=self.device_id,
        )

    @property
    def patient_id(self) -> str:
        return self.claims.patient

    @property
    def consultation_id(self) -> str | None:
        return self.claims.consultation

    @property
    def jti(self) -> str:
        return self.claims.jti

    @property
    def purpose(self) -> str:
        return self.claims.purpose


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def posture_who(actor: Actor, posture: DevicePosture | None) -> Who:
    """The actor on this device, as the audit log names them."""
    return Who(
        actor_id=actor.user_id,
        actor_role=actor.role,
        establishment=actor.establishment,
        device_id=posture.device_id if posture else None,
    )


def require_posture(
    check: PostureCheck, *, session: Session, actor: Actor, meta: RequestMeta | None, action: str, **ids: Any
) -> DevicePosture:
    """The compliant prison laptop this request comes from, or a recorded refusal."""
    if check.posture is None:
        reason = f" ({check.failure})" if check.failure else ""
        refuse(
            NoPosture(f"Record access needs a compliant device with a valid posture token{reason}"),
            session=session,
            who=posture_who(actor, None),
            meta=meta,
            action=action,
            detail={"posture": check.failure or "missing"},
            **ids,
        )
    if check.posture.device_kind == ROOM_ENDPOINT:
        refuse(
            RoomEndpointForbidden("Room endpoints never receive record access"),
            session=session,
            who=posture_who(actor, check.posture),
            meta=meta,
            action=action,
            **ids,
        )
    return check.posture


def sign_grant(
    *,
    session: Session,
    signer: TokenSigner,
    actor: Actor,
    posture: DevicePosture,
    patient_id: str,
    consultation_id: str | None,
    expires_at: datetime,
    now: datetime,
    kind: str,
    scope: str,
    purpose: str,
    renewed_from: str | None = None,
) -> IssuedGrant:
    """Sign a grant, record it in ``record_grants`` and return it with its verified claims."""
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = {
        "jti": jti,
        "patient": patient_id,
        "consultation": consultation_id,
        "cnf": {"jkt": posture.thumbprint},
        "scope": scope,
        "purpose": purpose,
        "kind": kind,
        "device": posture.device_id,
    }
    ttl = expires_at - now - _EXP_MARGIN
    token = signer.issue(subject=actor.user_id, audience=GRANT_AUDIENCE, ttl=ttl, claims=claims)
    verified = GrantClaims.model_validate(signer.verify(token, audience=GRANT_AUDIENCE))
    session.add(
        RecordGrant(
            jti=jti,
            kind=kind,
            user_id=actor.user_id,
            patient_id=patient_id,
            consultation_id=consultation_id,
            device_id=posture.device_id,
            jkt=posture.thumbprint,
            scope=scope,
            purpose=purpose,
            issued_at=now,
            expires_at=verified.expires_at,
            renewed_from=renewed_from,
        )
    )
    return IssuedGrant(token=token, claims=verified)


def issue_grant(
    *,
    session: Session,
    signer: TokenSigner,
    lookup: ConsultationLookup,
    actor: Actor,
    posture: PostureCheck,
    consultation_id: str,
    meta: RequestMeta | None = None,
    now: datetime | None = None,
) -> IssuedGrant:
    """Grant the host of a live consultation, on a compliant laptop, access to its patient."""
    now = _now(now)
    action = "grant.issue"
    device = require_posture(
        posture,
        session=session,
        actor=actor,
        meta=meta,
        action=action,
        consultation_id=consultation_id,
        purpose_of_use="TREAT",
    )
    who = posture_who(actor, device)
    view = lookup(session, consultation_id)
    if view is None or view.host_user_id != actor.user_id:
        # A consultation that does not exist and one hosted by someone else look the same.
        refuse(
            NotHost("Only the host of the consultation may access its patient's records"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            consultation_id=consultation_id,
            purpose_of_use="TREAT",
        )
    ids: dict[str, Any] = {
        "consultation_id": view.id,
        "patient_id": view.patient_id,
        "purpose_of_use": "TREAT",
    }
    if view.state != LIVE:
        refuse(
            ConsultationNotLive(state=view.state), session=session, who=who, meta=meta, action=action, **ids
        )
    expires_at = min(now + GRANT_TTL, view.scheduled_end)
    if expires_at - now - _EXP_MARGIN < _MIN_TTL:
        refuse(
            ConsultationNotLive(
                f'Cannot grant record access in consultation state "{view.state}": '
                "its scheduled end has passed"
            ),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    issued = sign_grant(
        session=session,
        signer=signer,
        actor=actor,
        posture=device,
        patient_id=view.patient_id,
        consultation_id=view.id,
        expires_at=expires_at,
        now=now,
        kind="consultation",
        scope=CONSULTATION_SCOPE,
        purpose="TREAT",
    )
    allow(
        session=session,
        who=who,
        meta=meta,
        action=action,
        authority_jti=issued.claims.jti,
        detail={"scope": CONSULTATION_SCOPE, "exp": issued.claims.exp},
        **ids,
    )
    return issued


def _map_verify_error(exc: Exception) -> GrantError:
    code = getattr(exc, "code", None)
    if code == "token_expired":
        return GrantExpired()
    if code == "wrong_audience":
        return WrongAudience()
    return GrantInvalid("The record grant is malformed or its signature does not verify")


def _unverified_jti(token: str) -> str | None:
    # Only for the audit entry of a refusal: which token was tried. Never trusted.
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    jti = decoded.get("jti") if isinstance(decoded, dict) else None
    return jti[:64] if isinstance(jti, str) and jti.isascii() and "." not in jti else None


def _verify_token(
    *,
    session: Session,
    signer: TokenSigner,
    token: str | None,
    who: Who,
    meta: RequestMeta | None,
    action: str,
) -> tuple[GrantClaims, RecordGrant]:
    if not token:
        refuse(
            GrantInvalid("Send the record grant in the X-Record-Grant header"),
            session=session,
            who=who,
            meta=meta,
            action=action,
        )
    try:
        claims = GrantClaims.model_validate(signer.verify(token, audience=GRANT_AUDIENCE))
    except ValidationError:
        refuse(
            GrantInvalid("The token is not a record grant"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            authority_jti=_unverified_jti(token),
        )
    except Exception as exc:  # the signer's own error types are the host's, not ours
        refuse(
            _map_verify_error(exc),
            session=session,
            who=who,
            meta=meta,
            action=action,
            authority_jti=_unverified_jti(token),
        )
    ids: dict[str, Any] = {
        "authority_jti": claims.jti,
        "patient_id": claims.patient,
        "consultation_id": claims.consultation,
        "purpose_of_use": claims.purpose,
    }
    row = session.get(RecordGrant, claims.jti)
    if row is None:
        refuse(
            GrantInvalid("The record grant is unknown"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    if row.revoked_at is not None:
        refuse(
            GrantRevoked(f'The record grant was revoked ("{row.revoke_reason or "revoked"}")'),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    if claims.sub != who.actor_id:
        refuse(
            GrantInvalid("The record grant was issued to another user"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    return claims, row


def _check_consultation(
    *,
    session: Session,
    lookup: ConsultationLookup,
    claims: GrantClaims,
    who: Who,
    meta: RequestMeta | None,
    action: str,
) -> None:
    if claims.kind != "consultation":
        return
    assert claims.consultation is not None  # noqa: S101 - consultation grants always name one
    view = lookup(session, claims.consultation)
    ids: dict[str, Any] = {
        "authority_jti": claims.jti,
        "patient_id": claims.patient,
        "consultation_id": claims.consultation,
        "purpose_of_use": claims.purpose,
    }
    if view is None or view.host_user_id != claims.sub or view.patient_id != claims.patient:
        refuse(
            GrantInvalid("The record grant no longer matches its consultation"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    if view.state != LIVE:
        # Belt and braces: ending a consultation revokes its grants in the same transaction.
        refuse(
            ConsultationNotLive(state=view.state), session=session, who=who, meta=meta, action=action, **ids
        )


def authorize_grant(
    *,
    session: Session,
    signer: TokenSigner,
    lookup: ConsultationLookup,
    verify_proof: ProofVerifier,
    actor: Actor,
    token: str | None,
    proof: str | None,
    method: str,
    url: str,
    scope: str,
    meta: RequestMeta | None = None,
) -> ActiveGrant:
    """Check a grant for this request: signature, deny-list, holder, device key proof, scope, state."""
    action = "grant.use"
    who = Who(actor_id=actor.user_id, actor_role=actor.role, establishment=actor.establishment)
    claims, row = _verify_token(
        session=session, signer=signer, token=token, who=who, meta=meta, action=action
    )
    who = Who(
        actor_id=actor.user_id,
        actor_role=actor.role,
        establishment=actor.establishment,
        device_id=row.device_id,
    )
    ids: dict[str, Any] = {
        "authority_jti": claims.jti,
        "patient_id": claims.patient,
        "consultation_id": claims.consultation,
        "purpose_of_use": claims.purpose,
    }
    if not proof:
        refuse(
            KeyBindingMismatch("Send a proof signed by the grant's device key in X-Posture-Proof"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    try:
        verify_proof(proof=proof, thumbprint=claims.cnf.jkt, token_jti=claims.jti, method=method, url=url)
    except GrantError as exc:
        refuse(exc, session=session, who=who, meta=meta, action=action, **ids)
    if scope not in claims.scopes:
        refuse(
            GrantInvalid(f'The record grant does not include the scope "{scope}"'),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    _check_consultation(session=session, lookup=lookup, claims=claims, who=who, meta=meta, action=action)
    return ActiveGrant(claims=claims, actor=actor, device_id=row.device_id)


def renew_grant(
    *,
    session: Session,
    signer: TokenSigner,
    lookup: ConsultationLookup,
    actor: Actor,
    posture: PostureCheck,
    token: str | None,
    meta: RequestMeta | None = None,
    now: datetime | None = None,
) -> IssuedGrant:
    """Swap a valid consultation grant for a fresh one while the consultation is still live."""
    now = _now(now)
    action = "grant.renew"
    device = require_posture(
        posture, session=session, actor=actor, meta=meta, action=action, purpose_of_use="TREAT"
    )
    who = posture_who(actor, device)
    claims, row = _verify_token(
        session=session, signer=signer, token=token, who=who, meta=meta, action=action
    )
    ids: dict[str, Any] = {
        "authority_jti": claims.jti,
        "patient_id": claims.patient,
        "consultation_id": claims.consultation,
        "purpose_of_use": claims.purpose,
    }
    if claims.cnf.jkt != device.thumbprint:
        refuse(
            KeyBindingMismatch("The record grant is bound to another device key"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    if claims.kind != "consultation":
        refuse(
            GrantInvalid("Break-glass grants are not renewable; open a new break-glass access"),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    _check_consultation(session=session, lookup=lookup, claims=claims, who=who, meta=meta, action=action)
    assert claims.consultation is not None  # noqa: S101 - checked by the kind above
    view = lookup(session, claims.consultation)
    assert view is not None  # noqa: S101 - checked by _check_consultation
    expires_at = min(now + GRANT_TTL, view.scheduled_end)
    if expires_at - now - _EXP_MARGIN < _MIN_TTL:
        refuse(
            ConsultationNotLive(
                f'Cannot renew record access in consultation state "{view.state}": '
                "its scheduled end has passed"
            ),
            session=session,
            who=who,
            meta=meta,
            action=action,
            **ids,
        )
    issued = sign_grant(
        session=session,
        signer=signer,
        actor=actor,
        posture=device,
        patient_id=claims.patient,
        consultation_id=claims.consultation,
        expires_at=expires_at,
        now=now,
        kind="consultation",
        scope=CONSULTATION_SCOPE,
        purpose="TREAT",
        renewed_from=claims.jti,
    )
    # One live grant per renewal chain: the old one stops working at once.
    row.revoked_at = now
    row.revoke_reason = "renewed"
    session.add(row)
    allow(
        session=session,
        who=who,
        meta=meta,
        action=action,
        authority_jti=issued.claims.jti,
        patient_id=claims.patient,
        consultation_id=claims.consultation,
        purpose_of_use="TREAT",
        detail={"renewed_from": claims.jti, "exp": issued.claims.exp},
    )
    return issued


def revoke_consultation_grants(
    *, session: Session, consultation_id: str, reason: str = "consultation_ended", now: datetime | None = None
) -> int:
    """Revoke every unrevoked grant (and share) of a consultation; returns how many grants."""
    now = _now(now)
    jtis = list(
        session.exec(
            select(RecordGrant.jti).where(
                RecordGrant.consultation_id == consultation_id, col(RecordGrant.revoked_at).is_(None)
            )
        ).all()
    )
    if jtis:
        session.execute(
            update(RecordGrant)
            .where(col(RecordGrant.jti).in_(jtis), col(RecordGrant.revoked_at).is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )
    shares = list(
        session.exec(
            select(DocumentShare.id).where(
                col(DocumentShare.consultation_id) == consultation_id, col(DocumentShare.revoked_at).is_(None)
            )
        ).all()
    )
    if shares:
        session.execute(update(DocumentShare).where(col(DocumentShare.id).in_(shares)).values(revoked_at=now))
    allow(
        session=session,
        who=Who(actor_id=None, actor_role="system"),
        meta=None,
        action="grant.revoke",
        outcome="success",
        consultation_id=consultation_id,
        detail={
            "reason": reason,
            "grants": len(jtis),
            "shares": len(shares),
            "jtis": jtis[:50],
        },
    )
    return len(jtis)


def revoke_device_grants(
    *, session: Session, device_id: str, reason: str, now: datetime | None = None
) -> int:
    """Revoke every unrevoked, unexpired grant held on a device; returns how many."""
    now = _now(now)
    rows = list(
        session.exec(
            select(RecordGrant).where(
                RecordGrant.device_id == device_id,
                col(RecordGrant.revoked_at).is_(None),
                col(RecordGrant.expires_at) > now,
            )
        ).all()
    )
    for row in rows:
        row.revoked_at = now
        row.revoke_reason = reason[:64]
        session.add(row)
        allow(
            session=session,
            who=Who(actor_id=None, actor_role="system", device_id=device_id),
            meta=None,
            action="grant.revoke",
            outcome="success",
            authority_jti=row.jti,
            patient_id=row.patient_id,
            consultation_id=row.consultation_id,
            detail={"reason": reason[:64]},
        )
    return len(rows)


def revoke_grant(
    *, session: Session, jti: str, by: Actor, reason: str, meta: RequestMeta | None = None
) -> RecordGrant | None:
    """Revoke one grant by jti (admin); None when there is no such grant."""
    row = session.get(RecordGrant, jti)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = _now(None)
        row.revoke_reason = reason[:64]
        session.add(row)
    allow(
        session=session,
        who=Who(actor_id=by.user_id, actor_role=by.role, establishment=by.establishment),
        meta=meta,
        action="grant.revoke",
        outcome="success",
        authority_jti=jti,
        patient_id=row.patient_id,
        consultation_id=row.consultation_id,
        detail={"reason": reason[:64]},
    )
    return row
