"""``telemed records``, ``telemed audit`` and ``telemed keys rotate-kek``.

* ``telemed records add-patient`` / ``import``: register a patient; import a document (the
  file is streamed through the encryptor into the blob store; plaintext never lands on disk).
* ``telemed audit export [--from --to --patient] > file.jsonl``: signs a checkpoint over the
  current head (when the audit key is available), then writes checkpoints and entries;
  with a filter, entries outside it are redacted to their chain links so the file still
  verifies.
* ``telemed audit verify FILE --public-key KEYFILE``: offline, needs no database or server;
  names the first bad entry and exits 1 when the file does not verify.
* ``telemed audit verify … --witness-key W.pem --cosignatures cosignatures.jsonl``: also
  against every tree head the witness co-signed (``server.audit_witness``).
* ``telemed audit public-key``: every audit checkpoint public key, the current one last (PEM).
* ``telemed audit rotate-key``: a new audit checkpoint key; the old public key is kept for verifiers.
* ``telemed audit witness init|run``: the independent co-signer (``server.audit_witness``).
* ``telemed keys rotate-kek``: a new key-encryption key; every stored data key is re-wrapped.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from records.audit.chain import AuditEntry, format_ts
from records.audit.export import export_log, verify_export_file
from records.audit.keyring import read_public_keys, rotate_audit_key
from records.audit.log import create_checkpoint
from records.audit.signing import audit_key_id, load_audit_key, load_public_keys, public_key_pem
from records.audit.witness import read_cosignatures
from records.crypto import KekRing, WrappedKey, create_kek_file, rewrap
from records.decisions import Who, allow
from records.documents import DocumentInput, document_context, import_document
from records.errors import RecordsError
from records.models import Document, Note, NoteVersion, Patient
from records.notes import note_context
from records.patients import PatientCreate, create_patient
from records.ports import Actor
from records.vault import load_kek_ring
from server.audit_witness import witness_cli
from server.db import make_engine
from server.records_runtime import key_paths, load_vault
from server.settings import Settings

records_cli = typer.Typer(help="Patient records: register patients, import documents.", no_args_is_help=True)
audit_cli = typer.Typer(
    help="The tamper-evident audit log: export, verify, public keys, key rotation, witness.",
    no_args_is_help=True,
)
audit_cli.add_typer(witness_cli, name="witness")

console = Console()
err_console = Console(stderr=True)


def _operator() -> Who:
    """The person at the terminal, as the audit log names them."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = "unknown"
    return Who(actor_id=f"cli:{name}"[:64], actor_role="admin")


@contextmanager
def _database() -> Iterator[tuple[Settings, Engine]]:
    # Imported here: server.cli registers this module at its bottom.
    from server.cli import load_settings, prepare_database

    settings = load_settings()
    prepare_database(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        yield settings, engine
    finally:
        engine.dispose()


def _fail(exc: RecordsError) -> typer.Exit:
    err_console.print(f"[red]{exc.code}:[/red] {exc.message}")
    return typer.Exit(1)


def _patient_by_number(session: Session, prison_number: str) -> Patient:
    patient = session.exec(select(Patient).where(Patient.prison_number == prison_number.upper())).first()
    if patient is None:
        err_console.print(f"[red]not_found:[/red] no patient with prison number {prison_number.upper()}")
        raise typer.Exit(1)
    return patient


@records_cli.command("add-patient")
def add_patient(
    prison_number: str = typer.Option(..., "--prison-number", help="e.g. A1234BC"),
    name: str = typer.Option(..., help="Full name."),
    date_of_birth: datetime = typer.Option(..., "--dob", formats=["%Y-%m-%d"], help="YYYY-MM-DD"),
    establishment: str = typer.Option(..., help="Prison."),
) -> None:
    """Register a patient."""
    data = PatientCreate(
        prison_number=prison_number,
        name=name,
        date_of_birth=date_of_birth.date(),
        establishment=establishment,
    )
    with _database() as (_settings, engine), Session(engine, expire_on_commit=False) as session:
        try:
            operator = _operator()
            actor = Actor(user_id=operator.actor_id or "cli", role="admin")
            patient = create_patient(session=session, actor=actor, data=data)
        except RecordsError as exc:
            raise _fail(exc) from exc
        session.commit()
    console.print(f"Registered patient [bold]{patient.prison_number}[/bold] (id {patient.id}).")


@records_cli.command("import")
def import_file(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="The document to import."
    ),
    patient: str = typer.Option(..., "--patient", help="The patient's prison number."),
    doc_type: str = typer.Option(..., "--type", help="letter, discharge, referral, result…"),
    title: str = typer.Option(..., help="Title shown to clinicians."),
    document_date: datetime | None = typer.Option(
        None, "--date", formats=["%Y-%m-%d"], help="Date of the document (default today)."
    ),
    author: str = typer.Option("", help="Who wrote it."),
    content_type: str = typer.Option("application/octet-stream", help="Media type, e.g. application/pdf."),
) -> None:
    """Import a document for a patient, encrypted at rest (the file is read, never copied)."""
    try:
        data = DocumentInput(
            doc_type=doc_type,
            title=title,
            document_date=document_date.date() if document_date else date.today(),
            content_type=content_type,
            author=author,
        )
    except RecordsError as exc:
        raise _fail(exc) from exc
    with _database() as (settings, engine), Session(engine, expire_on_commit=False) as session:
        try:
            vault = load_vault(settings, engine)
            target = _patient_by_number(session, patient)
            with file.open("rb") as source:
                document = import_document(
                    session=session,
                    vault=vault,
                    patient_id=target.id,
                    data=data,
                    source=source,
                    who=_operator(),
                    max_bytes=settings.records_max_document_bytes,
                )
            session.commit()
        except RecordsError as exc:
            raise _fail(exc) from exc
    console.print(
        f"Imported [bold]{document.title}[/bold] for {target.prison_number}: document {document.id}, "
        f"{document.size} bytes, sha256 {document.sha256}"
    )


def _filter(
    since: datetime | None, until: datetime | None, patient_id: str | None
) -> Callable[[AuditEntry], bool] | None:
    if since is None and until is None and patient_id is None:
        return None
    low = format_ts(since.replace(tzinfo=since.tzinfo or UTC)) if since else None
    high = format_ts(until.replace(tzinfo=until.tzinfo or UTC)) if until else None

    def include(entry: AuditEntry) -> bool:
        return (
            (low is None or entry.ts >= low)
            and (high is None or entry.ts < high)
            and (patient_id is None or entry.patient_id == patient_id)
        )

    return include


@audit_cli.command("export")
def export(
    since: datetime | None = typer.Option(
        None, "--from", help="Entries at or after (ISO date or time, UTC)."
    ),
    until: datetime | None = typer.Option(None, "--to", help="Entries before (ISO date or time, UTC)."),
    patient: str | None = typer.Option(None, "--patient", help="Only this patient (prison number or id)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
    sign: bool = typer.Option(True, help="Sign a checkpoint over the current head first."),
) -> None:
    """Export the audit log as JSON lines (checkpoints, then entries; filtered-out entries redacted)."""
    with _database() as (settings, engine), Session(engine, expire_on_commit=False) as session:
        patient_id = None
        if patient is not None:
            found = session.exec(
                select(Patient).where(
                    (col(Patient.prison_number) == patient.upper()) | (col(Patient.id) == patient)
                )
            ).first()
            patient_id = found.id if found is not None else patient
        allow(
            session=session,
            who=_operator(),
            meta=None,
            action="audit.export",
            outcome="success",
            patient_id=patient_id,
            purpose_of_use="HSYSADMIN",
            detail={"filtered": bool(since or until or patient), "to": "file" if output else "stdout"},
        )
        session.commit()
        if sign:
            # After recording the export itself, so the file's last entry is signed too.
            _checkpoint(settings, session)
        include = _filter(since, until, patient_id)
        if output is None:
            stats = export_log(session=session, out=sys.stdout, include=include)
        else:
            with output.open("w", encoding="utf-8") as out:
                stats = export_log(session=session, out=out, include=include)
    err_console.print(
        f"Exported {stats.entries} entries, {stats.redacted} redacted, {stats.checkpoints} checkpoints "
        f"(head seq {stats.head_seq})."
    )
    if stats.key_ids:
        # typer.echo: rich would wrap the ids at 80 columns through a pipe.
        typer.echo(
            f"Checkpoints signed by audit keys {', '.join(stats.key_ids)}; verify with a public-key file "
            "holding each (telemed audit public-key writes every audit key).",
            err=True,
        )


def _checkpoint(settings: Settings, session: Session) -> bool:
    try:
        _kek, audit_key = key_paths(settings)
        key = load_audit_key(audit_key)
        create_checkpoint(session=session, private_key=key)
        session.commit()
    except RecordsError as exc:
        # Still export: the entries after the last checkpoint are reported as unanchored.
        session.rollback()
        err_console.print(f"[yellow]no new checkpoint ({exc.code}):[/yellow] {exc.message}")
        return False
    return True


@audit_cli.command("verify")
def verify(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="An audit export."),
    public_key: Path = typer.Option(
        ..., "--public-key", exists=True, dir_okay=False, readable=True, help="Audit public key (PEM)."
    ),
    witness_key: Path | None = typer.Option(
        None,
        "--witness-key",
        exists=True,
        dir_okay=False,
        readable=True,
        help="The witness public key (PEM); needs --cosignatures.",
    ),
    cosignatures: Path | None = typer.Option(
        None,
        "--cosignatures",
        exists=True,
        dir_okay=False,
        readable=True,
        help="The witness's cosignatures.jsonl.",
    ),
) -> None:
    """Verify an export offline: chain, sequence, checkpoints, witness; names the first bad entry."""
    if (witness_key is None) != (cosignatures is None):
        err_console.print("[red]usage:[/red] give --witness-key and --cosignatures together")
        raise typer.Exit(2)
    try:
        keys = load_public_keys(public_key.read_bytes())
        witness_keys = None if witness_key is None else load_public_keys(witness_key.read_bytes())
    except RecordsError as exc:
        raise _fail(exc) from exc
    cosigned = None
    if cosignatures is not None:
        with cosignatures.open("r", encoding="utf-8", errors="surrogateescape", newline="") as stream:
            try:
                cosigned = read_cosignatures(stream)
            except ValueError as exc:
                err_console.print(f"[red]FAILED (malformed):[/red] {exc}")
                raise typer.Exit(1) from None
    # Bytes that are not UTF-8 reach the verifier as a line that is not canonical, not a crash.
    with file.open("r", encoding="utf-8", errors="surrogateescape", newline="") as stream:
        report = verify_export_file(stream, keys, cosignatures=cosigned, witness_keys=witness_keys)
    if report.ok:
        console.print(f"[green]OK[/green] {report.message}")
        return
    where = f" at seq {report.first_bad_seq}" if report.first_bad_seq is not None else ""
    err_console.print(f"[red]FAILED ({report.problem}{where}):[/red] {report.message}")
    raise typer.Exit(1)


@audit_cli.command("public-key")
def public_key(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the PEM here."),
) -> None:
    """Print every audit checkpoint public key (PEM, oldest first, the current one last) for verifiers."""
    from server.cli import load_settings

    settings = load_settings()
    try:
        _kek, audit_key = key_paths(settings)
        key = load_audit_key(audit_key)
        keys = read_public_keys(audit_key, key)
    except RecordsError as exc:
        raise _fail(exc) from exc
    pem = "".join(public_key_pem(k) for k in keys)
    if output is None:
        sys.stdout.write(pem)
    else:
        output.write_text(pem, encoding="ascii")
    current = audit_key_id(key.public_key())
    for k in keys:
        key_id = audit_key_id(k)
        typer.echo(f"key id {key_id}{' (current)' if key_id == current else ' (retired)'}", err=True)


@audit_cli.command("rotate-key")
def rotate_key() -> None:
    """Replace the audit checkpoint key with a new one; retired public keys stay for verifiers."""
    with _database() as (settings, engine), Session(engine, expire_on_commit=False) as session:
        try:
            _kek, audit_key = key_paths(settings)
            rotated = rotate_audit_key(audit_key)
        except RecordsError as exc:
            raise _fail(exc) from exc
        allow(
            session=session,
            who=_operator(),
            meta=None,
            action="audit.rotate_key",
            outcome="success",
            purpose_of_use="HSYSADMIN",
            detail={"old_key_id": rotated.old_key_id, "new_key_id": rotated.new_key_id},
        )
        session.commit()
        # The rotation's own entry is the first one signed under the new key.
        signed = _checkpoint(settings, session)
    # typer.echo: paths and key ids on lines of their own, never wrapped by rich.
    typer.echo(f"New audit key {rotated.new_key_id} in {rotated.key_file} (mode 600).")
    typer.echo(
        f"Retired audit key {rotated.old_key_id}: its private key was replaced; its checkpoints still verify."
    )
    count = len(rotated.key_ids)
    typer.echo(f"Every audit public key ({count}, the new one last): {rotated.public_keys_file}")
    if signed:
        typer.echo("Signed a checkpoint with the new key.")
    typer.echo(
        "A running server signs with the new key from its next checkpoint. Give the public-key file "
        "to every verifier and to the witness; copy both files to every other server."
    )


@audit_cli.command("checkpoint")
def checkpoint_now() -> None:
    """Sign a checkpoint over the current head of the log now."""
    with _database() as (settings, engine), Session(engine, expire_on_commit=False) as session:
        signed = _checkpoint(settings, session)
    if not signed:
        raise typer.Exit(1)
    console.print("Checkpoint up to date.")


def rotate_kek() -> None:
    """Add a new key-encryption key and re-wrap every stored data key under it."""
    with _database() as (settings, engine), Session(engine, expire_on_commit=False) as session:
        try:
            kek_dir, _audit = key_paths(settings)
            load_kek_ring(kek_dir, create=False)  # refuse to rotate keys that do not load
            version = create_kek_file(kek_dir)
            ring = KekRing.from_directory(kek_dir)
        except RecordsError as exc:
            raise _fail(exc) from exc
        documents = _rewrap_documents(session, ring)
        notes = _rewrap_notes(session, ring)
        allow(
            session=session,
            who=_operator(),
            meta=None,
            action="keys.rotate_kek",
            outcome="success",
            purpose_of_use="HSYSADMIN",
            detail={"kek_version": version, "documents": documents, "note_versions": notes},
        )
        session.commit()
    console.print(
        f"New key-encryption key version [bold]{version}[/bold]; re-wrapped {documents} document and "
        f"{notes} note keys. Keep the old key files until the next backup has been verified."
    )


def _rewrap_documents(session: Session, ring: KekRing) -> int:
    rows = session.exec(select(Document).where(col(Document.kek_version) != ring.active_version)).all()
    for row in rows:
        wrapped = rewrap(
            WrappedKey.from_bytes(row.wrapped_key), ring=ring, aad=document_context(row).key_aad()
        )
        row.wrapped_key, row.kek_version = wrapped.to_bytes(), wrapped.kek_version
        session.add(row)
    return len(rows)


def _rewrap_notes(session: Session, ring: KekRing) -> int:
    rows = session.exec(select(NoteVersion).where(col(NoteVersion.kek_version) != ring.active_version)).all()
    for row in rows:
        note = session.get(Note, row.note_id)
        assert note is not None  # noqa: S101 - versions reference notes by foreign key
        context = note_context(note_id=row.note_id, patient_id=note.patient_id, version=row.version)
        wrapped = rewrap(WrappedKey.from_bytes(row.wrapped_key), ring=ring, aad=context.key_aad())
        row.wrapped_key, row.kek_version = wrapped.to_bytes(), wrapped.kek_version
        session.add(row)
    return len(rows)
