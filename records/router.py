"""The records HTTP API, built by ``make_router(deps)`` with the host's dependencies passed in.

Headers: ``Authorization: Bearer <access token>`` (signed-in user), ``X-Posture-Token`` +
``X-Posture-Proof`` (compliant device, to obtain a grant), ``X-Record-Grant`` +
``X-Posture-Proof`` (a proof bound to the grant's jti, to use it). Specialists read shared
documents with ``Authorization: Bearer <join token>``. See ``docs/records.md``.
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the Annotated
# dependency aliases built inside make_router at definition time.

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints
from sqlmodel import Session

from records import breakglass, documents, grants, notes, patients, shares
from records.audit import log as audit_log
from records.audit.export import verify_stored_log
from records.audit.fhir import FhirSystems, to_fhir_bundle
from records.audit.log import latest_checkpoint
from records.audit.query import (
    ACCESS_CATEGORIES,
    RECORD_READ_CATEGORIES,
    AuditQuery,
    Sort,
    query_entries,
)
from records.audit.signing import public_key_pem
from records.audit.verify import VerifyReport
from records.crypto import PlaintextStream
from records.decisions import Who, allow
from records.errors import NotFoundOrDenied, RecordsError
from records.grants import ActiveGrant
from records.models import BreakGlassAccess, Document, PatientPublic
from records.ports import (
    Actor,
    ConsultationLookup,
    Participant,
    PostureCheck,
    ProofVerifier,
    RequestMeta,
    TokenSigner,
)
from records.vault import Vault

__all__ = ["RecordsContext", "RecordsDeps", "make_router"]

GRANT_HEADER = "X-Record-Grant"
PROOF_HEADER = "X-Posture-Proof"
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

#: The largest ``offset`` a list accepts: far past any real list, and inside every database's
#: integers and the audit trail's (an offset is recorded in the ``audit.query`` entry).
MAX_OFFSET = 2**31 - 1
Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description=f"Rows to skip, 0 to {MAX_OFFSET} (422 beyond)")
]

# Same shape the audit trail refuses to store (records.audit.chain): a filter is recorded in
# the ``audit.query`` entry, so a pasted token is refused here, as a 422, before anything runs.
_TOKEN_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _not_a_token(value: str | None) -> str | None:
    if value is not None and _TOKEN_LIKE.search(value):
        raise ValueError("looks like a token; search by its jti, never the token itself")
    return value


def _utc(value: datetime | None) -> datetime | None:
    try:
        return None if value is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


IdFilter = Annotated[str | None, AfterValidator(_not_a_token)]
Moment = Annotated[AwareDatetime | None, AfterValidator(_utc)]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


@dataclass(frozen=True)
class RecordsContext:
    """The long-lived collaborators of the records API, provided by the host per request."""

    signer: TokenSigner
    lookup: ConsultationLookup
    verify_proof: ProofVerifier
    vault: Vault
    max_document_bytes: int
    fhir: FhirSystems


@dataclass(frozen=True)
class RecordsDeps:
    """FastAPI dependency callables the host supplies (see ``server/records_wiring.py``)."""

    session: Callable[..., Any]
    """Yields the request's Session (committed on success, rolled back on error)."""
    actor: Callable[..., Any]
    """Returns the signed-in :class:`Actor` (access token)."""
    admin: Callable[..., Any]
    """Returns the signed-in :class:`Actor`, refusing anyone but an admin."""
    posture: Callable[..., Any]
    """Returns the request's :class:`PostureCheck` (never raises for a missing token)."""
    participant: Callable[..., Any]
    """Returns the :class:`Participant` a bearer join token names."""
    context: Callable[..., Any]
    """Returns the :class:`RecordsContext`."""


# --- Wire schemas --------------------------------------------------------------------------


class GrantRequest(BaseModel):
    consultation_id: str = Field(min_length=1, max_length=64)


class GrantResponse(BaseModel):
    """A record grant: send it back in X-Record-Grant with a proof by the same device key."""

    grant: str
    jti: str
    expires_at: datetime
    scope: str
    purpose: str
    patient_id: str
    consultation_id: str | None


class BreakGlassRequest(BaseModel):
    patient_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(max_length=breakglass.MAX_REASON_CHARS)


class BreakGlassResponse(GrantResponse):
    access_id: str
    review_status: str


class NoteCreate(BaseModel):
    text: str = Field(min_length=1, max_length=notes.MAX_NOTE_CHARS)


class NoteVersionCreate(NoteCreate):
    base_version: int = Field(ge=1, description="The latest version the author saw")


class ShareRequest(BaseModel):
    consultation_id: str = Field(min_length=1, max_length=64)
    document_id: str = Field(min_length=1, max_length=64)
    participant_id: str = Field(min_length=1, max_length=80, pattern=r"^specialist:[A-Za-z0-9_-]+$")


class SharePublic(BaseModel):
    id: str
    consultation_id: str
    document_id: str
    participant_id: str
    created_at: datetime


class ReviewRequest(BaseModel):
    outcome: Literal["approved", "rejected"]
    note: str = Field(min_length=1, max_length=breakglass.MAX_REASON_CHARS)


class BreakGlassPublic(BaseModel):
    id: str
    user_id: str
    patient_id: str
    device_id: str
    grant_jti: str
    reason: str
    opened_at: datetime
    expires_at: datetime
    status: str
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None


class RevokeRequest(BaseModel):
    reason: str = Field(default="admin", min_length=1, max_length=64)


class AuditPagePublic(BaseModel):
    """A page of audit entries (export format) and the cursor of the next page."""

    entries: list[dict[str, Any]]
    next_cursor: str | None


class AuditKeyItem(BaseModel):
    key_id: str
    public_key_pem: str
    current: bool


class AuditKeyPublic(BaseModel):
    key_id: str
    public_key_pem: str
    keys: list[AuditKeyItem]
    """Every audit key, retired ones first, the current one last: verifiers need them all."""


class CheckpointPublic(BaseModel):
    tree_size: int
    root_hash: str
    last_entry_hash: str
    ts: str
    key_id: str
    signature: str


class ConsistencyPublic(BaseModel):
    first: int
    second: int
    proof: list[str]


class VerifyPublic(BaseModel):
    ok: bool
    entries_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None
    problem: str | None
    message: str
    head_seq: int


# --- Helpers ---------------------------------------------------------------------------------


def request_meta(request: Request) -> RequestMeta:
    """The request's id, client address, method and URL, for the audit trail and proofs."""
    return RequestMeta(
        request_id=getattr(request.state, "request_id", None),
        ip=request.client.host if request.client else None,
        method=request.method,
        url=str(request.url),
    )


def _grant_response(issued: grants.IssuedGrant) -> GrantResponse:
    claims = issued.claims
    return GrantResponse(
        grant=issued.token,
        jti=claims.jti,
        expires_at=claims.expires_at,
        scope=claims.scope,
        purpose=claims.purpose,
        patient_id=claims.patient,
        consultation_id=claims.consultation,
    )


def _document(document: Document) -> documents.DocumentPublic:
    return documents.DocumentPublic.model_validate(document, from_attributes=True)


def _stream(document: Document, chunks: PlaintextStream) -> StreamingResponse:
    def body() -> Iterator[bytes]:
        with chunks:
            yield from chunks

    return StreamingResponse(
        body(),
        media_type=document.content_type,
        headers={**NO_STORE, "Content-Length": str(document.size), "ETag": f'"{document.sha256}"'},
    )


def make_router(deps: RecordsDeps) -> APIRouter:
    """Build the records and audit API around the host's dependencies."""
    # scope="function": commit before the response is sent (see server/deps.py).
    SessionDep = Annotated[Session, Depends(deps.session, scope="function")]
    ActorDep = Annotated[Actor, Depends(deps.actor)]
    AdminDep = Annotated[Actor, Depends(deps.admin)]
    PostureDep = Annotated[PostureCheck, Depends(deps.posture)]
    ParticipantDep = Annotated[Participant, Depends(deps.participant)]
    ContextDep = Annotated[RecordsContext, Depends(deps.context)]
    GrantHeader = Annotated[
        str | None, Header(alias=GRANT_HEADER, description="Record grant from POST /records/grants")
    ]
    ProofHeader = Annotated[
        str | None, Header(alias=PROOF_HEADER, description="Request proof signed by the grant's device key")
    ]

    def grant_for(scope: str) -> Callable[..., ActiveGrant]:
        def dependency(
            request: Request,
            session: SessionDep,
            actor: ActorDep,
            context: ContextDep,
            grant: GrantHeader = None,
            proof: ProofHeader = None,
        ) -> ActiveGrant:
            return grants.authorize_grant(
                session=session,
                signer=context.signer,
                lookup=context.lookup,
                verify_proof=context.verify_proof,
                actor=actor,
                token=grant,
                proof=proof,
                method=request.method,
                url=str(request.url),
                scope=scope,
                meta=request_meta(request),
            )

        return dependency

    ReadGrant = Annotated[ActiveGrant, Depends(grant_for("documents:read"))]
    WriteGrant = Annotated[ActiveGrant, Depends(grant_for("notes:write"))]

    router = APIRouter(prefix="/api/v1", tags=["records"])

    # --- Grants ----------------------------------------------------------------------------

    @router.post("/records/grants", status_code=status.HTTP_201_CREATED, response_model=GrantResponse)
    def issue_grant(
        body: GrantRequest,
        request: Request,
        response: Response,
        session: SessionDep,
        actor: ActorDep,
        posture: PostureDep,
        context: ContextDep,
    ) -> GrantResponse:
        """Get a record grant for a live consultation you host, on a compliant laptop."""
        response.headers.update(NO_STORE)
        issued = grants.issue_grant(
            session=session,
            signer=context.signer,
            lookup=context.lookup,
            actor=actor,
            posture=posture,
            consultation_id=body.consultation_id,
            meta=request_meta(request),
        )
        return _grant_response(issued)

    @router.post("/records/grants/renew", response_model=GrantResponse)
    def renew_grant(
        request: Request,
        response: Response,
        session: SessionDep,
        actor: ActorDep,
        posture: PostureDep,
        context: ContextDep,
        grant: GrantHeader = None,
    ) -> GrantResponse:
        """Swap your grant for a fresh one while the consultation is live (same device key)."""
        response.headers.update(NO_STORE)
        issued = grants.renew_grant(
            session=session,
            signer=context.signer,
            lookup=context.lookup,
            actor=actor,
            posture=posture,
            token=grant,
            meta=request_meta(request),
        )
        return _grant_response(issued)

    @router.post("/records/grants/{jti}/revoke", status_code=status.HTTP_204_NO_CONTENT)
    def revoke_grant(
        jti: str, body: RevokeRequest, request: Request, session: SessionDep, admin: AdminDep
    ) -> None:
        """Revoke one grant at once (admin)."""
        if (
            grants.revoke_grant(
                session=session, jti=jti, by=admin, reason=body.reason, meta=request_meta(request)
            )
            is None
        ):
            raise NotFoundOrDenied()

    @router.post(
        "/records/break-glass", status_code=status.HTTP_201_CREATED, response_model=BreakGlassResponse
    )
    def open_break_glass(
        body: BreakGlassRequest,
        request: Request,
        response: Response,
        session: SessionDep,
        actor: ActorDep,
        posture: PostureDep,
        context: ContextDep,
    ) -> BreakGlassResponse:
        """Emergency access to a patient outside a consultation: a reason, 15 minutes, admin review."""
        response.headers.update(NO_STORE)
        opened = breakglass.open_break_glass(
            session=session,
            signer=context.signer,
            actor=actor,
            posture=posture,
            patient_id=body.patient_id,
            reason=body.reason,
            meta=request_meta(request),
        )
        return BreakGlassResponse(
            **_grant_response(opened.grant).model_dump(),
            access_id=opened.access.id,
            review_status=opened.access.status,
        )

    # --- Reading and writing under a grant ----------------------------------------------------

    @router.get("/records/patients/{patient_id}", response_model=PatientPublic)
    def get_patient(
        patient_id: str, request: Request, response: Response, session: SessionDep, grant: ReadGrant
    ) -> PatientPublic:
        """The grant's patient (who they are, to confirm identity)."""
        response.headers.update(NO_STORE)
        patient = patients.get_patient_for_grant(
            session=session, grant=grant, patient_id=patient_id, meta=request_meta(request)
        )
        return PatientPublic.model_validate(patient, from_attributes=True)

    @router.get("/records/patients/{patient_id}/documents", response_model=list[documents.DocumentPublic])
    def list_documents(
        patient_id: str, request: Request, response: Response, session: SessionDep, grant: ReadGrant
    ) -> list[documents.DocumentPublic]:
        """The documents of the grant's patient, newest first."""
        response.headers.update(NO_STORE)
        found = documents.list_documents(
            session=session, grant=grant, patient_id=patient_id, meta=request_meta(request)
        )
        return [_document(d) for d in found]

    @router.get("/records/documents/{document_id}", response_model=documents.DocumentPublic)
    def get_document(
        document_id: str, request: Request, response: Response, session: SessionDep, grant: ReadGrant
    ) -> documents.DocumentPublic:
        """One document's metadata."""
        response.headers.update(NO_STORE)
        document = documents.get_document(
            session=session, grant=grant, document_id=document_id, meta=request_meta(request)
        )
        return _document(document)

    @router.get("/records/documents/{document_id}/content", response_class=StreamingResponse)
    def read_document(
        document_id: str, request: Request, session: SessionDep, grant: ReadGrant, context: ContextDep
    ) -> StreamingResponse:
        """The document's content, decrypted on the fly (the read is audited before a byte is sent)."""
        document, chunks = documents.open_document(
            session=session,
            vault=context.vault,
            grant=grant,
            document_id=document_id,
            meta=request_meta(request),
        )
        # Commit the audit entry now: the body streams after this function returns.
        session.commit()
        return _stream(document, chunks)

    @router.get("/records/patients/{patient_id}/notes", response_model=list[notes.NotePublic])
    def list_notes(
        patient_id: str,
        request: Request,
        response: Response,
        session: SessionDep,
        grant: ReadGrant,
        context: ContextDep,
    ) -> list[notes.NotePublic]:
        """Every note of the grant's patient, each with its full version history."""
        response.headers.update(NO_STORE)
        found = notes.list_notes(
            session=session,
            vault=context.vault,
            grant=grant,
            patient_id=patient_id,
            meta=request_meta(request),
        )
        return [n.public() for n in found]

    @router.post("/records/notes", status_code=status.HTTP_201_CREATED, response_model=notes.NotePublic)
    def create_note(
        body: NoteCreate,
        request: Request,
        response: Response,
        session: SessionDep,
        grant: WriteGrant,
        context: ContextDep,
    ) -> notes.NotePublic:
        """Write a consultation note for the grant's patient."""
        response.headers.update(NO_STORE)
        history = notes.create_note(
            session=session, vault=context.vault, grant=grant, text=body.text, meta=request_meta(request)
        )
        return history.public()

    @router.get("/records/notes/{note_id}", response_model=notes.NotePublic)
    def read_note(
        note_id: str,
        request: Request,
        response: Response,
        session: SessionDep,
        grant: ReadGrant,
        context: ContextDep,
    ) -> notes.NotePublic:
        """A note with every version, oldest first."""
        response.headers.update(NO_STORE)
        history = notes.read_note(
            session=session, vault=context.vault, grant=grant, note_id=note_id, meta=request_meta(request)
        )
        return history.public()

    @router.post(
        "/records/notes/{note_id}/versions",
        status_code=status.HTTP_201_CREATED,
        response_model=notes.NotePublic,
    )
    def add_note_version(
        note_id: str,
        body: NoteVersionCreate,
        request: Request,
        response: Response,
        session: SessionDep,
        grant: WriteGrant,
        context: ContextDep,
    ) -> notes.NotePublic:
        """Save a new version of your note (the old versions stay)."""
        response.headers.update(NO_STORE)
        history = notes.add_note_version(
            session=session,
            vault=context.vault,
            grant=grant,
            note_id=note_id,
            text=body.text,
            base_version=body.base_version,
            meta=request_meta(request),
        )
        return history.public()

    @router.post("/records/shares", status_code=status.HTTP_201_CREATED, response_model=SharePublic)
    def share_document(
        body: ShareRequest,
        request: Request,
        session: SessionDep,
        grant: ReadGrant,
        context: ContextDep,
    ) -> SharePublic:
        """Share one document with a specialist in this call (host, with a grant)."""
        share = shares.share_document(
            session=session,
            lookup=context.lookup,
            grant=grant,
            consultation_id=body.consultation_id,
            document_id=body.document_id,
            participant_id=body.participant_id,
            meta=request_meta(request),
        )
        return SharePublic.model_validate(share, from_attributes=True)

    @router.get("/records/shared", response_model=list[documents.DocumentPublic])
    def list_shared(
        request: Request,
        response: Response,
        session: SessionDep,
        participant: ParticipantDep,
        context: ContextDep,
    ) -> list[documents.DocumentPublic]:
        """The documents shared with you in this call (specialist, join token)."""
        response.headers.update(NO_STORE)
        found = shares.list_shared_documents(
            session=session, lookup=context.lookup, participant=participant, meta=request_meta(request)
        )
        return [_document(d) for d in found]

    @router.get("/records/shared/{document_id}/content", response_class=StreamingResponse)
    def read_shared(
        document_id: str,
        request: Request,
        session: SessionDep,
        participant: ParticipantDep,
        context: ContextDep,
    ) -> StreamingResponse:
        """A document shared with you in this call (specialist, join token)."""
        document, chunks = shares.open_shared_document(
            session=session,
            vault=context.vault,
            lookup=context.lookup,
            participant=participant,
            document_id=document_id,
            meta=request_meta(request),
        )
        session.commit()
        return _stream(document, chunks)

    # --- Administration ----------------------------------------------------------------------

    @router.post(
        "/patients", status_code=status.HTTP_201_CREATED, response_model=PatientPublic, tags=["patients"]
    )
    def create_patient(
        body: patients.PatientCreate, request: Request, session: SessionDep, admin: AdminDep
    ) -> PatientPublic:
        """Register a patient (admin)."""
        patient = patients.create_patient(session=session, actor=admin, data=body, meta=request_meta(request))
        return PatientPublic.model_validate(patient, from_attributes=True)

    @router.get("/patients", response_model=list[PatientPublic], tags=["patients"])
    def list_patients(
        request: Request,
        session: SessionDep,
        admin: AdminDep,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Offset = 0,
    ) -> list[PatientPublic]:
        """Registered patients by prison number (admin)."""
        found = patients.list_patients(
            session=session, actor=admin, limit=limit, offset=offset, meta=request_meta(request)
        )
        return [PatientPublic.model_validate(p, from_attributes=True) for p in found]

    @router.get("/patients/lookup", response_model=PatientPublic, tags=["patients"])
    def lookup_patient(
        request: Request,
        session: SessionDep,
        actor: ActorDep,
        prison_number: Annotated[str, Query(min_length=2, max_length=32)],
    ) -> PatientPublic:
        """Find a patient by exact prison number (clinicians and admins, to book a consultation)."""
        patient = patients.find_patient(
            session=session, actor=actor, prison_number=prison_number, meta=request_meta(request)
        )
        return PatientPublic.model_validate(patient, from_attributes=True)

    @router.post(
        "/records/patients/{patient_id}/documents",
        status_code=status.HTTP_201_CREATED,
        response_model=documents.DocumentPublic,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def import_document(
        patient_id: str,
        request: Request,
        session: SessionDep,
        admin: AdminDep,
        context: ContextDep,
        doc_type: Annotated[str, Query(max_length=64)],
        title: Annotated[str, Query(max_length=200)],
        document_date: Annotated[date, Query()],
        author: Annotated[str, Query(max_length=200)] = "",
    ) -> documents.DocumentPublic:
        """Import a document (admin): the raw body is streamed through the encryptor, never to disk."""
        meta = request_meta(request)
        who = Who(actor_id=admin.user_id, actor_role=admin.role, establishment=admin.establishment)
        content_type = request.headers.get("content-type", "application/octet-stream")
        data = documents.DocumentInput(
            doc_type=doc_type,
            title=title,
            document_date=document_date,
            content_type=content_type,
            author=author,
        )
        target = await run_in_threadpool(
            lambda: documents.prepare_import(session=session, patient_id=patient_id, who=who, meta=meta)
        )
        try:
            sealed = await documents.aimport_document(
                vault=context.vault,
                target=target,
                source=request.stream(),
                max_bytes=context.max_document_bytes,
            )
        except RecordsError as exc:
            # Records the failed upload (committed) and re-raises it.
            await run_in_threadpool(
                partial(
                    documents.record_import_failure, exc, session=session, target=target, who=who, meta=meta
                )
            )
            raise
        document = await run_in_threadpool(
            lambda: documents.finish_import(
                session=session,
                vault=context.vault,
                target=target,
                data=data,
                sealed=sealed,
                who=who,
                meta=meta,
            )
        )
        return _document(document)

    # --- Audit (admin) -------------------------------------------------------------------------

    def _audit_page(
        *,
        request: Request,
        session: SessionDep,
        admin: Actor,
        context: RecordsContext,
        query: AuditQuery,
        fmt: str,
        label: str,
    ) -> Any:
        page = query_entries(session=session, query=query)
        allow(
            session=session,
            who=Who(actor_id=admin.user_id, actor_role=admin.role, establishment=admin.establishment),
            meta=request_meta(request),
            action="audit.query",
            patient_id=query.patient_id,
            purpose_of_use="HSYSADMIN",
            detail={
                "query": label,
                "filters": query.model_dump(mode="json", exclude_defaults=True, exclude={"cursor"}),
                "returned": len(page.entries),
            },
        )
        if fmt == "fhir":
            bundle = to_fhir_bundle(page.entries, systems=context.fhir, base_url=context.fhir.base)
            if page.next_cursor:
                next_url = request.url.include_query_params(cursor=page.next_cursor)
                bundle["link"] = [
                    {"relation": "self", "url": str(request.url)},
                    {"relation": "next", "url": str(next_url)},
                ]
            return bundle
        return AuditPagePublic(entries=[e.to_export() for e in page.entries], next_cursor=page.next_cursor)

    def audit_query(
        patient_id: Annotated[IdFilter, Query(min_length=1, max_length=64)] = None,
        actor_id: Annotated[IdFilter, Query(min_length=1, max_length=200)] = None,
        device_id: Annotated[IdFilter, Query(min_length=1, max_length=200)] = None,
        consultation_id: Annotated[IdFilter, Query(min_length=1, max_length=64)] = None,
        authority_jti: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=200,
                pattern=r"^[A-Za-z0-9_-]+$",
                description="A token's jti (letters, digits, - and _), never the token itself",
            ),
        ] = None,
        action: Annotated[
            str | None, Query(min_length=3, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
        ] = None,
        category: Annotated[list[Category] | None, Query(max_length=32)] = None,
        outcome: Annotated[list[Literal["allowed", "denied", "success", "failure"]] | None, Query()] = None,
        purpose_of_use: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")] = None,
        outside_consultation: bool = False,
        since: Annotated[Moment, Query(alias="from", description="With a UTC offset, e.g. ...Z")] = None,
        until: Annotated[Moment, Query(alias="to", description="With a UTC offset, e.g. ...Z")] = None,
        sort: Sort = "-ts",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=500,
                description="next_cursor of the previous page, same sort (else 422 invalid_cursor)",
            ),
        ] = None,
    ) -> AuditQuery:
        """Filters shared by every audit listing."""
        return AuditQuery(
            patient_id=patient_id,
            actor_id=actor_id,
            device_id=device_id,
            consultation_id=consultation_id,
            authority_jti=authority_jti,
            action=action,
            categories=tuple(category or ()),
            outcomes=tuple(outcome or ()),
            purpose_of_use=purpose_of_use,
            outside_consultation=outside_consultation,
            since=since,
            until=until,
            sort=sort,
            limit=limit,
            cursor=cursor,
        )

    QueryDep = Annotated[AuditQuery, Depends(audit_query)]
    Format = Annotated[Literal["json", "fhir"], Query(alias="format")]

    @router.get("/audit/entries", tags=["audit"])
    def audit_entries(
        request: Request,
        session: SessionDep,
        admin: AdminDep,
        context: ContextDep,
        query: QueryDep,
        fmt: Format = "json",
    ) -> Any:
        """Audit entries: filtered, sorted (``sort=-ts``), paged (``limit``, ``cursor``); ``format=fhir``."""
        return _audit_page(
            request=request,
            session=session,
            admin=admin,
            context=context,
            query=query,
            fmt=fmt,
            label="entries",
        )

    @router.get("/audit/patients/{patient}/accesses", tags=["audit"])
    def audit_patient_accesses(
        patient: Annotated[str, Path(min_length=1, max_length=64), AfterValidator(_not_a_token)],
        request: Request,
        session: SessionDep,
        admin: AdminDep,
        context: ContextDep,
        query: QueryDep,
        fmt: Format = "json",
    ) -> Any:
        """Who accessed this patient's record (grants, reads, notes, shares, break-glass), allowed or not."""
        scoped = query.model_copy(
            update={"patient_id": patient, "categories": query.categories or ACCESS_CATEGORIES}
        )
        return _audit_page(
            request=request,
            session=session,
            admin=admin,
            context=context,
            query=scoped,
            fmt=fmt,
            label="patient_accesses",
        )

    @router.get("/audit/outside-consultation", tags=["audit"])
    def audit_outside_consultation(
        request: Request,
        session: SessionDep,
        admin: AdminDep,
        context: ContextDep,
        query: QueryDep,
        fmt: Format = "json",
    ) -> Any:
        """Record accesses made outside any consultation (break-glass and anything unexpected)."""
        scoped = query.model_copy(
            update={"outside_consultation": True, "categories": query.categories or RECORD_READ_CATEGORIES}
        )
        return _audit_page(
            request=request,
            session=session,
            admin=admin,
            context=context,
            query=scoped,
            fmt=fmt,
            label="outside_consultation",
        )

    @router.get("/audit/device-checks/failed", tags=["audit"])
    def audit_failed_device_checks(
        request: Request,
        session: SessionDep,
        admin: AdminDep,
        context: ContextDep,
        query: QueryDep,
        fmt: Format = "json",
    ) -> Any:
        """Device posture checks that failed or were refused."""
        scoped = query.model_copy(
            update={"action": "device.check", "outcomes": query.outcomes or ("denied", "failure")}
        )
        return _audit_page(
            request=request,
            session=session,
            admin=admin,
            context=context,
            query=scoped,
            fmt=fmt,
            label="failed_device_checks",
        )

    @router.get("/audit/break-glass", response_model=list[BreakGlassPublic], tags=["audit"])
    def break_glass_queue(
        request: Request,
        session: SessionDep,
        admin: AdminDep,
        status_filter: Annotated[
            Literal["pending", "approved", "rejected"] | None, Query(alias="status")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Offset = 0,
    ) -> list[BreakGlassPublic]:
        """The break-glass review queue (``status=pending``: oldest first)."""
        found = breakglass.list_break_glass(session=session, status=status_filter, limit=limit, offset=offset)
        allow(
            session=session,
            who=Who(actor_id=admin.user_id, actor_role=admin.role, establishment=admin.establishment),
            meta=request_meta(request),
            action="audit.query",
            purpose_of_use="HSYSADMIN",
            detail={"query": "break_glass", "status": status_filter or "any", "returned": len(found)},
        )
        return [BreakGlassPublic.model_validate(a, from_attributes=True) for a in found]

    @router.post("/audit/break-glass/{access_id}/review", response_model=BreakGlassPublic, tags=["audit"])
    def review_break_glass(
        access_id: str, body: ReviewRequest, request: Request, session: SessionDep, admin: AdminDep
    ) -> BreakGlassPublic:
        """Sign off a break-glass access as approved or rejected, with a note (admin)."""
        access: BreakGlassAccess = breakglass.review_break_glass(
            session=session,
            reviewer=admin,
            access_id=access_id,
            outcome=body.outcome,
            note=body.note,
            meta=request_meta(request),
        )
        return BreakGlassPublic.model_validate(access, from_attributes=True)

    @router.get("/audit/public-key", response_model=AuditKeyPublic, tags=["audit"])
    def audit_public_key(context: ContextDep) -> AuditKeyPublic:
        """The current audit checkpoint public key and every retired one (pin them; verifiers need all)."""
        current, public = context.vault.audit_keys.snapshot()
        keys = [
            AuditKeyItem(key_id=key_id, public_key_pem=public_key_pem(key), current=key_id == current)
            for key_id, key in public.items()
        ]
        mine = next(k for k in keys if k.current)
        return AuditKeyPublic(key_id=mine.key_id, public_key_pem=mine.public_key_pem, keys=keys)

    @router.get("/audit/checkpoints/latest", response_model=CheckpointPublic | None, tags=["audit"])
    def audit_latest_checkpoint(session: SessionDep, admin: AdminDep) -> CheckpointPublic | None:
        """The newest signed checkpoint (tree size, root, signature)."""
        checkpoint = latest_checkpoint(session=session)
        return None if checkpoint is None else CheckpointPublic(**checkpoint.model_dump(mode="json"))

    @router.get("/audit/consistency", response_model=ConsistencyPublic, tags=["audit"])
    def audit_consistency(
        session: SessionDep,
        admin: AdminDep,
        first: Annotated[int, Query(ge=0, le=2**53 - 1)],
        second: Annotated[int, Query(ge=0, le=2**53 - 1)],
    ) -> ConsistencyPublic:
        """RFC 9162 proof that the tree of ``first`` entries is a prefix of the tree of ``second``."""
        proof = audit_log.consistency(session=session, first=first, second=second)
        return ConsistencyPublic(first=first, second=second, proof=proof)

    @router.get("/audit/verify", response_model=VerifyPublic, tags=["audit"])
    def audit_verify(
        request: Request, session: SessionDep, admin: AdminDep, context: ContextDep
    ) -> VerifyPublic:
        """Verify the whole stored log against its signed checkpoints, now (admin)."""
        stored = verify_stored_log(session=session, public_key=context.vault.audit_public_keys())
        report: VerifyReport = stored.report
        end = stored.head_seq
        allow(
            session=session,
            who=Who(actor_id=admin.user_id, actor_role=admin.role, establishment=admin.establishment),
            meta=request_meta(request),
            action="audit.verify",
            outcome="success" if report.ok else "failure",
            purpose_of_use="HSYSADMIN",
            detail={"ok": report.ok, "entries": report.entries_checked, "problem": report.problem},
        )
        return VerifyPublic(
            **report.model_dump(include=set(VerifyPublic.model_fields) - {"head_seq"}), head_seq=end
        )

    return router
