"""Small pieces the console's route modules share: audit rows, session answers, the cookie."""

from __future__ import annotations

from fastapi import Response
from sqlmodel import Session

from records.audit.chain import AuditEntry
from server.admin import recovery, secretbox, sessions
from server.admin.audit_search import Names
from server.admin.deps import cookie_name, is_https, server_secret, session_policy
from server.admin.models import AdminSession, SessionStage
from server.admin.schemas import AuditRow, SessionOut, UserBrief
from server.identity.models import User
from server.services import Services


def audit_row(entry: AuditEntry, names: Names) -> AuditRow:
    """A search result row: the entry's fields and the names of its ids."""
    reason = entry.detail.get("reason")
    return AuditRow(
        seq=entry.seq,
        ts=entry.ts,
        action=entry.action,
        outcome=entry.outcome,
        actor_id=entry.actor_id,
        actor_role=entry.actor_role,
        actor_name=names.user_label(entry.actor_id),
        patient_id=entry.patient_id,
        prison_number=names.prison_numbers.get(entry.patient_id or ""),
        consultation_id=entry.consultation_id,
        purpose_of_use=entry.purpose_of_use,
        device_id=entry.device_id,
        ip=entry.ip,
        authority_jti=entry.authority_jti,
        reason=reason if isinstance(reason, str) else None,
        description=entry.data.description,
        document_ids=list(entry.data.document_ids),
        intact=entry.is_intact(),
    )


def set_cookie(response: Response, services: Services, token: str) -> None:
    """Put the session token in the console's cookie (HttpOnly, SameSite=Strict, Secure over https)."""
    response.set_cookie(
        cookie_name(services.settings),
        token,
        path="/",
        secure=is_https(services.settings),
        httponly=True,
        samesite="strict",
    )


def session_out(
    *, session: Session, services: Services, row: AdminSession, user: User, token: str
) -> SessionOut:
    """The session as the page sees it, with the CSRF token for this session token."""
    policy = session_policy(services.settings)
    idle = policy.idle if row.stage == SessionStage.ACTIVE.value else sessions.PENDING_LIFETIME
    left = (
        recovery.codes_left(session=session, user_id=user.id)
        if row.stage == SessionStage.ACTIVE.value
        else None
    )
    return SessionOut(
        stage=row.stage,
        user=UserBrief(id=user.id, username=user.username, display_name=user.display_name),
        csrf_token=secretbox.csrf_token(server_secret(services), token),
        session_id=row.id,
        idle_timeout_s=int(idle.total_seconds()),
        idle_expires_at=min(row.last_seen_at + idle, row.expires_at),
        expires_at=row.expires_at,
        recovery_codes_left=left,
    )
