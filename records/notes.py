"""Consultation notes: every edit is a new encrypted version row; nothing is overwritten.

A note's text is sealed like a document (its own data key, wrapped by the KEK ring, bound
to note id, patient and version) and stored as ciphertext in ``note_versions``. Reading a
note returns its whole history. Only the note's author may add versions, under a grant
for the note's patient; anyone else, and any note of another patient, is "not found".
"""

from __future__ import annotations

import hmac
import io
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlmodel import Session, col, select

from records.crypto import FileContext, WrappedKey, decrypt_stream, encrypt_stream, generate_data_key
from records.crypto.keyring import KekRing
from records.decisions import allow, refuse
from records.errors import GrantInvalid, IntegrityError, NotFoundOrDenied, RecordsError
from records.grants import ActiveGrant
from records.models import Note, NoteVersion
from records.ports import RequestMeta
from records.service_errors import VersionConflict
from records.vault import Vault

__all__ = [
    "MAX_NOTE_CHARS",
    "NoteHistory",
    "NotePublic",
    "NoteVersionPublic",
    "add_note_version",
    "create_note",
    "list_notes",
    "note_context",
    "read_note",
]

MAX_NOTE_CHARS = 100_000
NOTES_WRITE = "notes:write"


class NoteVersionPublic(BaseModel):
    """One version of a note, as the grant holder sees it."""

    version: int
    text: str
    author_id: str
    consultation_id: str | None
    created_at: datetime


class NotePublic(BaseModel):
    """A note with its full version history, oldest first."""

    id: str
    patient_id: str
    consultation_id: str | None
    author_id: str
    created_at: datetime
    latest_version: int
    versions: list[NoteVersionPublic]


@dataclass(frozen=True)
class NoteHistory:
    """A note and the plaintext of its versions."""

    note: Note
    versions: list[tuple[NoteVersion, str]]

    def public(self) -> NotePublic:
        """The API view of this history."""
        return NotePublic(
            id=self.note.id,
            patient_id=self.note.patient_id,
            consultation_id=self.note.consultation_id,
            author_id=self.note.author_id,
            created_at=self.note.created_at,
            latest_version=self.note.latest_version,
            versions=[
                NoteVersionPublic(
                    version=v.version,
                    text=text,
                    author_id=v.author_id,
                    consultation_id=v.consultation_id,
                    created_at=v.created_at,
                )
                for v, text in self.versions
            ],
        )


def note_context(*, note_id: str, patient_id: str, version: int) -> FileContext:
    """What one note version's ciphertext is bound to."""
    return FileContext(file_id=f"note:{note_id}", patient_id=patient_id, version=version)


def _seal_text(ring: KekRing, context: FileContext, text: str) -> tuple[bytes, WrappedKey, int, str]:
    data_key = generate_data_key()
    wrapped = ring.wrap(data_key, aad=context.key_aad())
    out = io.BytesIO()
    result = encrypt_stream(text.encode("utf-8"), out, data_key=data_key, context=context)
    return out.getvalue(), wrapped, result.size, result.sha256


def _open_text(ring: KekRing, version: NoteVersion, patient_id: str) -> str:
    context = note_context(note_id=version.note_id, patient_id=patient_id, version=version.version)
    data_key = ring.unwrap(WrappedKey.from_bytes(version.wrapped_key), aad=context.key_aad())
    out = io.BytesIO()
    result = decrypt_stream(version.ciphertext, out, data_key=data_key, context=context)
    if not hmac.compare_digest(result.sha256, version.sha256):
        raise IntegrityError("A note version does not match its recorded SHA-256")
    return out.getvalue().decode("utf-8")


def _check_text(text: str) -> str:
    if not text.strip() or len(text) > MAX_NOTE_CHARS:
        raise ValueError(f"a note has 1 to {MAX_NOTE_CHARS} characters")
    return text


def _version_row(*, vault: Vault, note: Note, version: int, text: str, grant: ActiveGrant) -> NoteVersion:
    context = note_context(note_id=note.id, patient_id=note.patient_id, version=version)
    ciphertext, wrapped, size, sha256 = _seal_text(vault.ring, context, text)
    return NoteVersion(
        note_id=note.id,
        version=version,
        author_id=grant.actor.user_id,
        consultation_id=grant.consultation_id,
        grant_jti=grant.jti,
        size=size,
        sha256=sha256,
        ciphertext=ciphertext,
        wrapped_key=wrapped.to_bytes(),
        kek_version=wrapped.kek_version,
    )


def _detail(note_id: str | None) -> dict[str, str] | None:
    return {"note_id": note_id[:64]} if note_id else None


def _allow(
    *, session: Session, grant: ActiveGrant, meta: RequestMeta | None, action: str, note_id: str | None = None
) -> None:
    allow(
        session=session,
        who=grant.who,
        meta=meta,
        action=action,
        authority_jti=grant.jti,
        patient_id=grant.patient_id,
        consultation_id=grant.consultation_id,
        purpose_of_use=grant.purpose,
        detail=_detail(note_id),
    )


def _deny(
    error: RecordsError,
    *,
    session: Session,
    grant: ActiveGrant,
    meta: RequestMeta | None,
    action: str,
    note_id: str | None = None,
) -> NoReturn:
    refuse(
        error,
        session=session,
        who=grant.who,
        meta=meta,
        action=action,
        authority_jti=grant.jti,
        patient_id=grant.patient_id,
        consultation_id=grant.consultation_id,
        purpose_of_use=grant.purpose,
        detail=_detail(note_id),
    )


def create_note(
    *, session: Session, vault: Vault, grant: ActiveGrant, text: str, meta: RequestMeta | None = None
) -> NoteHistory:
    """Start a note for the grant's patient and consultation (version 1)."""
    _check_text(text)
    if NOTES_WRITE not in grant.claims.scopes or grant.consultation_id is None:
        _deny(
            GrantInvalid(f'The record grant does not include the scope "{NOTES_WRITE}"'),
            session=session,
            grant=grant,
            meta=meta,
            action="note.create",
        )
    note = Note(
        id=uuid.uuid4().hex,
        patient_id=grant.patient_id,
        consultation_id=grant.consultation_id,
        author_id=grant.actor.user_id,
        latest_version=1,
    )
    version = _version_row(vault=vault, note=note, version=1, text=text, grant=grant)
    session.add(note)
    session.flush()
    session.add(version)
    session.flush()
    _allow(session=session, grant=grant, meta=meta, action="note.create", note_id=note.id)
    return NoteHistory(note=note, versions=[(version, text)])


def _find_note(
    *, session: Session, grant: ActiveGrant, note_id: str, meta: RequestMeta | None, action: str, write: bool
) -> Note:
    note = session.get(Note, note_id)
    allowed = note is not None and note.patient_id == grant.patient_id
    if write and note is not None:
        allowed = allowed and note.author_id == grant.actor.user_id and NOTES_WRITE in grant.claims.scopes
    if note is None or not allowed:
        _deny(NotFoundOrDenied(), session=session, grant=grant, meta=meta, action=action, note_id=note_id)
    return note


def _history(*, session: Session, vault: Vault, note: Note) -> list[tuple[NoteVersion, str]]:
    versions = session.exec(
        select(NoteVersion).where(NoteVersion.note_id == note.id).order_by(col(NoteVersion.version))
    ).all()
    return [(v, _open_text(vault.ring, v, note.patient_id)) for v in versions]


def add_note_version(
    *,
    session: Session,
    vault: Vault,
    grant: ActiveGrant,
    note_id: str,
    text: str,
    base_version: int,
    meta: RequestMeta | None = None,
) -> NoteHistory:
    """Add a new version after ``base_version`` (the latest the author saw); never overwrites."""
    _check_text(text)
    note = _find_note(
        session=session, grant=grant, note_id=note_id, meta=meta, action="note.update", write=True
    )
    if base_version != note.latest_version:
        _deny(
            VersionConflict(
                f"Cannot save over version {base_version}: the note is at version {note.latest_version}"
            ),
            session=session,
            grant=grant,
            meta=meta,
            action="note.update",
            note_id=note_id,
        )
    version = _version_row(vault=vault, note=note, version=base_version + 1, text=text, grant=grant)
    note.latest_version = version.version
    session.add(version)
    session.add(note)
    try:
        session.flush()
    except DbIntegrityError:
        # Two saves raced on the same base version: the unique (note, version) lets one win.
        _deny(
            VersionConflict(f"Cannot save over version {base_version}: another save came first"),
            session=session,
            grant=grant,
            meta=meta,
            action="note.update",
            note_id=note_id,
        )
    history = _history(session=session, vault=vault, note=note)
    # Audit last: the append holds the log's head lock until the transaction commits.
    _allow(session=session, grant=grant, meta=meta, action="note.update", note_id=note.id)
    return NoteHistory(note=note, versions=history)


def read_note(
    *, session: Session, vault: Vault, grant: ActiveGrant, note_id: str, meta: RequestMeta | None = None
) -> NoteHistory:
    """A note and every version of it, for the grant's patient."""
    note = _find_note(
        session=session, grant=grant, note_id=note_id, meta=meta, action="note.read", write=False
    )
    history = _history(session=session, vault=vault, note=note)
    _allow(session=session, grant=grant, meta=meta, action="note.read", note_id=note.id)
    return NoteHistory(note=note, versions=history)


def list_notes(
    *, session: Session, vault: Vault, grant: ActiveGrant, patient_id: str, meta: RequestMeta | None = None
) -> list[NoteHistory]:
    """Every note of the grant's patient with its history; any other patient is not found."""
    if patient_id != grant.patient_id:
        _deny(NotFoundOrDenied(), session=session, grant=grant, meta=meta, action="note.list")
    notes = session.exec(
        select(Note).where(Note.patient_id == patient_id).order_by(col(Note.created_at).desc(), col(Note.id))
    ).all()
    result = [NoteHistory(note=n, versions=_history(session=session, vault=vault, note=n)) for n in notes]
    _allow(session=session, grant=grant, meta=meta, action="note.list")
    return result
