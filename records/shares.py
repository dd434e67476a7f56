"""Sharing a document with a specialist in the call, and the specialist's share-scoped read.

The host (with a grant for the consultation) shares one document with one specialist
participant (``specialist:<invite_id>``) of that consultation. The specialist reads with
their join token: only documents shared with *them*, in *that* consultation, while it
is live. Ending the consultation revokes its shares with its grants.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from records.crypto import PlaintextStream
from records.decisions import Who, allow, refuse
from records.documents import open_sealed
from records.errors import NotFoundOrDenied, RecordsError
from records.grants import LIVE, ActiveGrant
from records.models import Document, DocumentShare
from records.ports import ConsultationLookup, Participant, RequestMeta
from records.vault import Vault

__all__ = ["list_shared_documents", "open_shared_document", "share_document"]

SPECIALIST = "specialist"


def share_document(
    *,
    session: Session,
    lookup: ConsultationLookup,
    grant: ActiveGrant,
    consultation_id: str,
    document_id: str,
    participant_id: str,
    meta: RequestMeta | None = None,
) -> DocumentShare:
    """Share one of the patient's documents with a specialist of this live consultation."""
    ids: dict[str, Any] = {
        "authority_jti": grant.jti,
        "patient_id": grant.patient_id,
        "document_ids": [document_id[:64]],
        "consultation_id": consultation_id[:64],
        "purpose_of_use": grant.purpose,
        "detail": {"participant_id": participant_id[:80]},
    }
    document = session.get(Document, document_id)
    view = lookup(session, consultation_id) if grant.consultation_id == consultation_id else None
    allowed = (
        document is not None
        and document.patient_id == grant.patient_id
        and view is not None
        and view.state == LIVE
        and view.patient_id == grant.patient_id
        and participant_id in view.specialist_participants
    )
    if not allowed:
        refuse(NotFoundOrDenied(), session=session, who=grant.who, meta=meta, action="document.share", **ids)
    existing = session.exec(
        select(DocumentShare).where(
            DocumentShare.consultation_id == consultation_id,
            DocumentShare.document_id == document_id,
            DocumentShare.participant_id == participant_id,
        )
    ).first()
    if existing is None:
        share = DocumentShare(
            consultation_id=consultation_id,
            document_id=document_id,
            participant_id=participant_id,
            shared_by=grant.actor.user_id,
            grant_jti=grant.jti,
        )
    else:
        # Sharing again (also after a revocation) is the same share, made current.
        share = existing
        share.revoked_at = None
        share.shared_by = grant.actor.user_id
        share.grant_jti = grant.jti
    session.add(share)
    session.flush()
    allow(session=session, who=grant.who, meta=meta, action="document.share", **ids)
    return share


def _who(participant: Participant) -> Who:
    return Who(actor_id=participant.participant_id, actor_role=participant.role)


def _live_view_ok(*, session: Session, lookup: ConsultationLookup, participant: Participant) -> bool:
    view = lookup(session, participant.consultation_id)
    return (
        participant.role == SPECIALIST
        and view is not None
        and view.state == LIVE
        and participant.participant_id in view.specialist_participants
    )


def list_shared_documents(
    *, session: Session, lookup: ConsultationLookup, participant: Participant, meta: RequestMeta | None = None
) -> list[Document]:
    """The documents shared with this specialist in their consultation (empty once it ends)."""
    documents: list[Document] = []
    if _live_view_ok(session=session, lookup=lookup, participant=participant):
        documents = list(
            session.exec(
                select(Document)
                .join(DocumentShare, col(DocumentShare.document_id) == col(Document.id))
                .where(
                    DocumentShare.consultation_id == participant.consultation_id,
                    DocumentShare.participant_id == participant.participant_id,
                    col(DocumentShare.revoked_at).is_(None),
                )
                .order_by(col(DocumentShare.created_at))
            ).all()
        )
    allow(
        session=session,
        who=_who(participant),
        meta=meta,
        action="share.list",
        authority_jti=participant.jti,
        consultation_id=participant.consultation_id,
        document_ids=[d.id for d in documents],
        purpose_of_use="TREAT",
    )
    return documents


def open_shared_document(
    *,
    session: Session,
    vault: Vault,
    lookup: ConsultationLookup,
    participant: Participant,
    document_id: str,
    meta: RequestMeta | None = None,
) -> tuple[Document, PlaintextStream]:
    """Open a document shared with this specialist; anything else is not found."""
    share = session.exec(
        select(DocumentShare).where(
            DocumentShare.consultation_id == participant.consultation_id,
            DocumentShare.document_id == document_id,
            DocumentShare.participant_id == participant.participant_id,
            col(DocumentShare.revoked_at).is_(None),
        )
    ).first()
    document = session.get(Document, document_id)
    ids: dict[str, Any] = {
        "authority_jti": participant.jti,
        "consultation_id": participant.consultation_id,
        "document_ids": [document_id[:64]],
        "purpose_of_use": "TREAT",
        "detail": {"via": "share"},
    }
    live = _live_view_ok(session=session, lookup=lookup, participant=participant)
    if share is None or document is None or not live:
        refuse(
            NotFoundOrDenied(),
            session=session,
            who=_who(participant),
            meta=meta,
            action="document.read",
            **ids,
        )
    ids["patient_id"] = document.patient_id
    try:
        stream = open_sealed(vault=vault, document=document)
    except RecordsError as exc:
        refuse(
            exc,
            session=session,
            who=_who(participant),
            meta=meta,
            action="document.read",
            outcome="failure",
            **ids,
        )
    allow(session=session, who=_who(participant), meta=meta, action="document.read", **ids)
    return document, stream
