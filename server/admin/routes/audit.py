"""Audit search, one entry in full, "who accessed this patient", exports (CSV, FHIR) and integrity."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator

from records.audit.chain import looks_like_token
from records.audit.fhir import FhirSystems, to_fhir_bundle
from server.admin import audit_search, integrity
from server.admin.audit_search import Outcome, Search
from server.admin.deps import AdminDep
from server.admin.events import record_admin
from server.admin.routes.common import audit_row
from server.admin.routes.headers import AdminRoute
from server.admin.schemas import AuditEntryOut, AuditPageOut, CheckpointOut, IntegrityOut, VerifyOut
from server.deps import ServicesDep, SessionDep
from server.errors import NotFound
from server.services import Services

router = APIRouter(prefix="/admin/api", tags=["admin"], route_class=AdminRoute)


def _not_a_token(value: str | None) -> str | None:
    # Every search is itself audited with its filters, and the trail refuses to hold a token:
    # a pasted token is refused here, as a 422, before anything runs.
    if value is not None and looks_like_token(value):
        raise ValueError("looks like a token; search by its jti, never the token itself")
    return value


def _plausible_day(value: date | None) -> date | None:
    # "to" is searched up to the next midnight, which does not exist after 9999-12-31.
    if value is not None and not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    return value


FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
Filter = Annotated[str | None, AfterValidator(_not_a_token)]
Day = Annotated[date | None, AfterValidator(_plausible_day)]


def search_params(
    patient: Annotated[Filter, Query(max_length=64, description="prison number or patient id")] = None,
    user: Annotated[Filter, Query(max_length=200, description="username or actor id")] = None,
    device: Annotated[Filter, Query(max_length=200)] = None,
    action: Annotated[Filter, Query(max_length=64, description="e.g. document.read")] = None,
    outcome: Outcome | None = None,
    consultation: Annotated[Filter, Query(max_length=64)] = None,
    authority: Annotated[Filter, Query(max_length=200, description="grant or token jti")] = None,
    day_from: Annotated[
        Day, Query(alias="from", description="first UTC day, YYYY-MM-DD (1970-01-01 to 9998-12-31)")
    ] = None,
    day_to: Annotated[
        Day, Query(alias="to", description="last UTC day, YYYY-MM-DD (included; 1970-01-01 to 9998-12-31)")
    ] = None,
) -> Search:
    """The search form's fields; empty ones are ignored."""
    return Search(
        patient=patient or None,
        user=user or None,
        device=device or None,
        action=action or None,
        outcome=outcome,
        consultation=consultation or None,
        authority=authority or None,
        day_from=day_from,
        day_to=day_to,
    )


SearchDep = Annotated[Search, Depends(search_params)]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int, Query(ge=1, le=200)]


def _fhir(services: Services) -> FhirSystems:
    return FhirSystems(base=services.settings.public_url.rstrip("/") + "/fhir")


def _search(
    *, admin: AdminDep, session: SessionDep, search: Search, cursor: str | None, limit: int, label: str
) -> AuditPageOut:
    query = audit_search.to_query(session=session, search=search, cursor=cursor, limit=limit)
    entries, next_cursor, names = audit_search.page(session=session, query=query)
    record_admin(
        session=session,
        action="audit.query",
        outcome="allowed",
        who=admin.who,
        where=admin.where,
        patient_id=query.patient_id,
        detail={
            "via": "admin_console",
            "query": label,
            "filters": search.filters(),
            "returned": len(entries),
        },
    )
    return AuditPageOut(
        entries=[audit_row(e, names) for e in entries], next_cursor=next_cursor, patient_id=query.patient_id
    )


@router.get("/audit/entries", response_model=AuditPageOut)
def search_entries(
    admin: AdminDep, session: SessionDep, search: SearchDep, cursor: Cursor = None, limit: Limit = 25
) -> AuditPageOut:
    """Search the audit log (every filter optional), newest first, a page at a time."""
    return _search(admin=admin, session=session, search=search, cursor=cursor, limit=limit, label="entries")


@router.get("/audit/patients/{patient_ref}/accesses", response_model=AuditPageOut)
def patient_accesses(
    patient_ref: str,
    admin: AdminDep,
    session: SessionDep,
    search: SearchDep,
    cursor: Cursor = None,
    limit: Limit = 25,
) -> AuditPageOut:
    """Who accessed this patient's record: grants, reads, notes, shares, break-glass; allowed or refused."""
    scoped = replace(search, patient=patient_ref, scope="patient_accesses")
    return _search(
        admin=admin, session=session, search=scoped, cursor=cursor, limit=limit, label="patient_accesses"
    )


@router.get("/audit/entries/{seq}", response_model=AuditEntryOut)
def one_entry(seq: int, admin: AdminDep, session: SessionDep) -> AuditEntryOut:
    """One entry with every field, whether its hash matches, and the names of its ids."""
    entry = audit_search.get_entry(session=session, seq=seq)
    if entry is None:
        raise NotFound(f"There is no audit entry {seq}")
    names = audit_search.names_for(session=session, entries=[entry])
    record_admin(
        session=session,
        action="audit.query",
        outcome="allowed",
        who=admin.who,
        where=admin.where,
        patient_id=entry.patient_id,
        detail={"via": "admin_console", "query": "entry", "seq": seq},
    )
    return AuditEntryOut(
        entry=entry.to_export(),
        actor_name=names.user_label(entry.actor_id),
        prison_number=names.prison_numbers.get(entry.patient_id or ""),
        intact=entry.is_intact(),
    )


@router.get("/audit/export", response_class=Response)
def export(
    admin: AdminDep,
    services: ServicesDep,
    session: SessionDep,
    search: SearchDep,
    fmt: Annotated[Literal["csv", "fhir"], Query(alias="format")] = "csv",
    scope: Literal["entries", "patient_accesses"] = "entries",
) -> Response:
    """Download every entry of the search (at most 10,000) as CSV or a FHIR R4 AuditEvent Bundle."""
    query = audit_search.to_query(session=session, search=replace(search, scope=scope))
    entries = audit_search.all_matching(session=session, query=query)
    record_admin(
        session=session,
        action="audit.export",
        outcome="success",
        who=admin.who,
        where=admin.where,
        patient_id=query.patient_id,
        detail={"via": "admin_console", "format": fmt, "filters": search.filters(), "entries": len(entries)},
    )
    stamp = f"audit-{scope}"
    if fmt == "fhir":
        bundle = to_fhir_bundle(
            entries, bundle_type="collection", systems=_fhir(services), base_url=_fhir(services).base
        )
        return Response(
            json.dumps(bundle, ensure_ascii=False, indent=1),
            media_type="application/fhir+json",
            headers={"Content-Disposition": f'attachment; filename="{stamp}.fhir.json"'},
        )
    names = audit_search.names_for(session=session, entries=entries)
    return Response(
        audit_search.to_csv(entries, names),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{stamp}.csv"'},
    )


# --- Integrity -------------------------------------------------------------------------------------


def _checkpoint_out(session: SessionDep) -> CheckpointOut | None:
    checkpoint = integrity.current_checkpoint(session=session)
    if checkpoint is None:
        return None
    return CheckpointOut(tree_size=checkpoint.tree_size, ts=checkpoint.ts, key_id=checkpoint.key_id)


def integrity_status(session: SessionDep) -> IntegrityOut:
    """Where the log stands and what the last verification found."""
    checkpoint = _checkpoint_out(session)
    last = integrity.last_verification(session=session)
    head = integrity.head_seq(session=session)
    if last is None:
        status: Literal["ok", "failed", "unknown"] = "unknown"
        summary = "The audit log has not been verified yet. Run the verification now."
    elif last["ok"]:
        status = "ok"
        summary = (
            f"The last verification, at {last['at']}, found all {last['entries_checked']} entries intact."
        )
    else:
        status = "failed"
        bad = f" at entry {last['first_bad_seq']}" if last.get("first_bad_seq") else ""
        summary = (
            f"The last check, at {integrity.readable_ts(last['at'])}, found the log tampered with{bad}. "
            "Check it again for the details."
        )
    return IntegrityOut(
        head_seq=head, checkpoint=checkpoint, last_verification=last, status=status, summary=summary
    )


@router.get("/integrity", response_model=IntegrityOut)
def integrity_view(admin: AdminDep, session: SessionDep) -> IntegrityOut:
    """The newest signed checkpoint and the last verification's result."""
    return integrity_status(session)


@router.post("/integrity/verify", response_model=VerifyOut)
def verify_now(admin: AdminDep, services: ServicesDep, session: SessionDep) -> VerifyOut:
    """Verify the whole stored log against its signed checkpoints now; the result is audited."""
    runtime = services.records
    if runtime is None:  # pragma: no cover - Services.build always sets it
        raise RuntimeError("records runtime is not configured")
    run = integrity.verify_stored_log(session=session, public_key=runtime.vault.audit_public_keys())
    report = run.report
    checkpoint = integrity.current_checkpoint(session=session)
    record_admin(
        session=session,
        action="audit.verify",
        outcome="success" if report.ok else "failure",
        who=admin.who,
        where=admin.where,
        detail={
            "via": "admin_console",
            "ok": report.ok,
            "entries": report.entries_checked,
            "problem": report.problem,
            "first_bad_seq": report.first_bad_seq,
            "anchored": report.anchored_size,
        },
    )
    return VerifyOut(
        ok=report.ok,
        status="ok" if report.ok else "failed",
        summary=integrity.summary(report, checkpoint),
        head_seq=run.head_seq,
        entries_checked=report.entries_checked,
        checkpoints_checked=report.checkpoints_checked,
        anchored_size=report.anchored_size,
        unanchored_entries=report.unanchored_entries,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
        checkpoint=None
        if checkpoint is None
        else CheckpointOut(tree_size=checkpoint.tree_size, ts=checkpoint.ts, key_id=checkpoint.key_id),
    )
