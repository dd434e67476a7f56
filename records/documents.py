"""Patient documents: import (streamed through the encryptor into the blob store) and read.

Plaintext never touches disk: the source (a file the CLI reads, or the request body the
API streams) goes chunk by chunk through ``records.crypto`` into the blob store, which
only ever sees ciphertext. A document that does not exist and one the caller may not see
raise the same :class:`NotFoundOrDenied`, after the same single lookup.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from records.crypto import FileContext, PlaintextStream, SealedFile, WrappedKey, aseal, seal, unseal
from records.crypto.stream import Source
from records.decisions import Who, allow, refuse
from records.errors import NotFoundOrDenied, RecordsError
from records.grants import ActiveGrant
from records.models import Document, Patient
from records.ports import RequestMeta
from records.service_errors import DocumentTooLarge, InvalidDocument
from records.vault import Vault

__all__ = [
    "DocumentInput",
    "DocumentPublic",
    "aimport_document",
    "document_context",
    "get_document",
    "import_document",
    "list_documents",
    "open_document",
]

_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$")
_DOC_TYPE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class DocumentInput:
    """What an importer says about a file; validated on construction."""

    doc_type: str
    title: str
    document_date: date
    content_type: str = "application/octet-stream"
    author: str = ""

    def __post_init__(self) -> None:
        if not _DOC_TYPE.match(self.doc_type):
            raise InvalidDocument("The document type is a short lower-case word, e.g. letter or discharge")
        if not 1 <= len(self.title.strip()) <= 200:
            raise InvalidDocument("The title must have 1 to 200 characters")
        if len(self.author) > 200:
            raise InvalidDocument("The author must have at most 200 characters")
        if not _CONTENT_TYPE.match(self.content_type.split(";", 1)[0].strip().lower()):
            raise InvalidDocument("The content type must be a media type such as application/pdf")


class DocumentPublic(BaseModel):
    """A document's metadata as API callers see it (never the blob id or wrapped key)."""

    id: str
    patient_id: str
    doc_type: str
    title: str
    document_date: date
    author: str
    content_type: str
    size: int
    sha256: str
    version: int


def document_context(document: Document) -> FileContext:
    """What the document's ciphertext and wrapped key are bound to."""
    return FileContext(file_id=document.id, patient_id=document.patient_id, version=document.version)


def _check_patient(*, session: Session, patient_id: str, who: Who, meta: RequestMeta | None) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        refuse(NotFoundOrDenied(), session=session, who=who, meta=meta, action="document.import")
    return patient


def _record(
    *,
    session: Session,
    document_id: str,
    patient: Patient,
    data: DocumentInput,
    sealed: SealedFile,
    who: Who,
    meta: RequestMeta | None,
    store_cleanup: Vault,
) -> Document:
    document = Document(
        id=document_id,
        patient_id=patient.id,
        doc_type=data.doc_type,
        title=data.title.strip(),
        document_date=data.document_date,
        author=data.author.strip(),
        content_type=data.content_type.strip().lower(),
        size=sealed.size,
        sha256=sealed.sha256,
        version=1,
        blob_id=sealed.blob_id,
        wrapped_key=sealed.wrapped_key.to_bytes(),
        kek_version=sealed.wrapped_key.kek_version,
        imported_by=who.actor_id or "unknown",
    )
    try:
        session.add(document)
        session.flush()
        allow(
            session=session,
            who=who,
            meta=meta,
            action="document.import",
            outcome="success",
            patient_id=patient.id,
            document_ids=[document.id],
            purpose_of_use="HOPERAT",
            detail={"size": sealed.size, "sha256": sealed.sha256, "doc_type": data.doc_type},
        )
    except BaseException:
        # The row did not make it: do not leave an orphan ciphertext behind.
        store_cleanup.store.delete(sealed.blob_id)
        raise
    return document


def import_document(
    *,
    session: Session,
    vault: Vault,
    patient_id: str,
    data: DocumentInput,
    source: Source,
    who: Who,
    meta: RequestMeta | None = None,
    max_bytes: int | None = None,
) -> Document:
    """Encrypt ``source`` into the blob store and record the document (blocking callers, e.g. the CLI)."""
    patient = _check_patient(session=session, patient_id=patient_id, who=who, meta=meta)
    document_id = uuid.uuid4().hex
    context = FileContext(file_id=document_id, patient_id=patient.id, version=1)
    sealed = seal(source, store=vault.store, ring=vault.ring, context=context)
    if max_bytes is not None and sealed.size > max_bytes:
        vault.store.delete(sealed.blob_id)
        refuse(
            DocumentTooLarge(f"The document has {sealed.size} bytes; at most {max_bytes} are accepted"),
            session=session,
            who=who,
            meta=meta,
            action="document.import",
            patient_id=patient.id,
            outcome="failure",
        )
    return _record(
        session=session,
        document_id=document_id,
        patient=patient,
        data=data,
        sealed=sealed,
        who=who,
        meta=meta,
        store_cleanup=vault,
    )


async def _limited(source: AsyncIterable[bytes], max_bytes: int | None) -> AsyncIterator[bytes]:
    total = 0
    async for piece in source:
        total += len(piece)
        if max_bytes is not None and total > max_bytes:
            raise DocumentTooLarge(f"The document is larger than the {max_bytes} bytes accepted")
        yield piece


class ImportTarget:
    """A checked patient and a fresh document id, between the async sealing and the DB write."""

    def __init__(self, patient: Patient) -> None:
        self.patient = patient
        self.document_id = uuid.uuid4().hex

    @property
    def context(self) -> FileContext:
        return FileContext(file_id=self.document_id, patient_id=self.patient.id, version=1)


def prepare_import(*, session: Session, patient_id: str, who: Who, meta: RequestMeta | None) -> ImportTarget:
    """Check the patient before any byte is read (an unknown patient is a recorded refusal)."""
    return ImportTarget(_check_patient(session=session, patient_id=patient_id, who=who, meta=meta))


async def aimport_document(
    *, vault: Vault, target: ImportTarget, source: AsyncIterable[bytes], max_bytes: int | None
) -> SealedFile:
    """Stream an async body (the HTTP request) through the encryptor into the blob store."""
    return await aseal(
        _limited(source, max_bytes), store=vault.store, ring=vault.ring, context=target.context
    )


def finish_import(
    *,
    session: Session,
    vault: Vault,
    target: ImportTarget,
    data: DocumentInput,
    sealed: SealedFile,
    who: Who,
    meta: RequestMeta | None,
) -> Document:
    """Record the document row and its audit entry for a sealed upload."""
    return _record(
        session=session,
        document_id=target.document_id,
        patient=target.patient,
        data=data,
        sealed=sealed,
        who=who,
        meta=meta,
        store_cleanup=vault,
    )


def record_import_failure(
    error: RecordsError, *, session: Session, target: ImportTarget, who: Who, meta: RequestMeta | None
) -> None:
    """Record an upload that failed while streaming (too large, aborted), then raise ``error``."""
    refuse(
        error,
        session=session,
        who=who,
        meta=meta,
        action="document.import",
        patient_id=target.patient.id,
        outcome="failure",
    )


def _find(
    *, session: Session, grant: ActiveGrant, document_id: str, meta: RequestMeta | None, action: str
) -> Document:
    document = session.get(Document, document_id)
    if document is None or document.patient_id != grant.patient_id:
        refuse(
            NotFoundOrDenied(),
            session=session,
            who=grant.who,
            meta=meta,
            action=action,
            authority_jti=grant.jti,
            patient_id=grant.patient_id,
            document_ids=[document_id[:64]],
            consultation_id=grant.consultation_id,
            purpose_of_use=grant.purpose,
        )
    return document


def list_documents(
    *, session: Session, grant: ActiveGrant, patient_id: str, meta: RequestMeta | None = None
) -> list[Document]:
    """The grant's patient's documents, newest first; any other patient is not found."""
    if patient_id != grant.patient_id:
        refuse(
            NotFoundOrDenied(),
            session=session,
            who=grant.who,
            meta=meta,
            action="document.list",
            authority_jti=grant.jti,
            patient_id=patient_id[:64],
            consultation_id=grant.consultation_id,
            purpose_of_use=grant.purpose,
        )
    documents = list(
        session.exec(
            select(Document)
            .where(Document.patient_id == patient_id)
            .order_by(col(Document.document_date).desc(), col(Document.id))
        ).all()
    )
    allow(
        session=session,
        who=grant.who,
        meta=meta,
        action="document.list",
        authority_jti=grant.jti,
        patient_id=patient_id,
        consultation_id=grant.consultation_id,
        purpose_of_use=grant.purpose,
        detail={"count": len(documents)},
    )
    return documents


def get_document(
    *, session: Session, grant: ActiveGrant, document_id: str, meta: RequestMeta | None = None
) -> Document:
    """One document's metadata, if it belongs to the grant's patient."""
    document = _find(session=session, grant=grant, document_id=document_id, meta=meta, action="document.view")
    allow(
        session=session,
        who=grant.who,
        meta=meta,
        action="document.view",
        authority_jti=grant.jti,
        patient_id=grant.patient_id,
        document_ids=[document.id],
        consultation_id=grant.consultation_id,
        purpose_of_use=grant.purpose,
    )
    return document


def open_sealed(*, vault: Vault, document: Document) -> PlaintextStream:
    """Unwrap the document's key and open its verified plaintext stream."""
    return unseal(
        store=vault.store,
        ring=vault.ring,
        blob_id=document.blob_id,
        wrapped_key=WrappedKey.from_bytes(document.wrapped_key),
        context=document_context(document),
        expected_sha256=document.sha256,
    )


def open_document(
    *, session: Session, vault: Vault, grant: ActiveGrant, document_id: str, meta: RequestMeta | None = None
) -> tuple[Document, PlaintextStream]:
    """Open a document's content for the grant holder; the read is audited before a byte leaves."""
    document = _find(session=session, grant=grant, document_id=document_id, meta=meta, action="document.read")
    ids: dict[str, Any] = {
        "authority_jti": grant.jti,
        "patient_id": grant.patient_id,
        "document_ids": [document.id],
        "consultation_id": grant.consultation_id,
        "purpose_of_use": grant.purpose,
    }
    try:
        stream = open_sealed(vault=vault, document=document)
    except RecordsError as exc:
        refuse(
            exc, session=session, who=grant.who, meta=meta, action="document.read", outcome="failure", **ids
        )
    allow(session=session, who=grant.who, meta=meta, action="document.read", **ids)
    return document, stream
