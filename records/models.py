"""Tables owned by the records library (patients here; documents, notes, grants and audit beside them)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from records.dbtypes import UTCDateTime


def _now() -> datetime:
    return datetime.now(UTC)


class PatientBase(SQLModel):
    # Format checked where patients are created (records.patients); tables do not validate.
    prison_number: str = Field(index=True, unique=True, min_length=2, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    establishment: str = Field(min_length=1, max_length=120)


class Patient(PatientBase, table=True):
    """A person in prison care. Identified by an opaque id everywhere but their own record."""

    __tablename__ = "patients"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class PatientPublic(PatientBase):
    """A patient as shown to someone entitled to see who they are."""

    id: str


# --- Documents, notes, grants, shares, break-glass, audit (records service tables) ---------
# Timestamps use records.dbtypes.UTCDateTime (aware UTC on both databases). Patient content
# (files, note text) is stored only as ciphertext: the rows keep wrapped keys and digests.


def _new_id() -> str:
    return uuid.uuid4().hex


class Document(SQLModel, table=True):
    """One imported patient document; the content is a ciphertext blob, never stored in clear."""

    __tablename__ = "documents"

    id: str = Field(default_factory=_new_id, primary_key=True, max_length=32)
    patient_id: str = Field(foreign_key="patients.id", index=True, max_length=32)
    doc_type: str = Field(max_length=64)
    title: str = Field(max_length=200)
    document_date: date
    author: str = Field(default="", max_length=200)
    content_type: str = Field(max_length=127)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    version: int = 1
    blob_id: str = Field(max_length=32)
    wrapped_key: bytes = Field(sa_type=LargeBinary)
    kek_version: int = Field(index=True)
    imported_by: str = Field(max_length=200)
    imported_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class Note(SQLModel, table=True):
    """A consultation note; its text lives in :class:`NoteVersion` rows, never overwritten."""

    __tablename__ = "notes"

    id: str = Field(default_factory=_new_id, primary_key=True, max_length=32)
    patient_id: str = Field(foreign_key="patients.id", index=True, max_length=32)
    consultation_id: str | None = Field(default=None, index=True, max_length=32)
    author_id: str = Field(index=True, max_length=32)
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    latest_version: int = 1


class NoteVersion(SQLModel, table=True):
    """One version of a note's text, encrypted like a document (its own data key)."""

    __tablename__ = "note_versions"
    __table_args__ = (UniqueConstraint("note_id", "version", name="uq_note_versions_note_version"),)

    id: str = Field(default_factory=_new_id, primary_key=True, max_length=32)
    note_id: str = Field(foreign_key="notes.id", index=True, max_length=32)
    version: int
    author_id: str = Field(max_length=32)
    consultation_id: str | None = Field(default=None, max_length=32)
    grant_jti: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    size: int
    sha256: str = Field(max_length=64)
    ciphertext: bytes = Field(sa_type=LargeBinary)
    wrapped_key: bytes = Field(sa_type=LargeBinary)
    kek_version: int = Field(index=True)


class RecordGrant(SQLModel, table=True):
    """Every record grant issued; ``revoked_at`` is the jti deny-list."""

    __tablename__ = "record_grants"

    jti: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16, description="consultation or break_glass")
    user_id: str = Field(index=True, max_length=32)
    patient_id: str = Field(index=True, max_length=32)
    consultation_id: str | None = Field(default=None, index=True, max_length=32)
    device_id: str = Field(max_length=64)
    jkt: str = Field(max_length=64)
    scope: str = Field(max_length=200)
    purpose: str = Field(max_length=16)
    issued_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    renewed_from: str | None = Field(default=None, max_length=64)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoke_reason: str | None = Field(default=None, max_length=64)


class DocumentShare(SQLModel, table=True):
    """A document the host shared with one specialist participant during one consultation."""

    __tablename__ = "record_shares"
    __table_args__ = (
        UniqueConstraint("consultation_id", "document_id", "participant_id", name="uq_record_shares_target"),
    )

    id: str = Field(default_factory=_new_id, primary_key=True, max_length=32)
    consultation_id: str = Field(index=True, max_length=32)
    document_id: str = Field(foreign_key="documents.id", index=True, max_length=32)
    participant_id: str = Field(index=True, max_length=80)
    shared_by: str = Field(max_length=32)
    grant_jti: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class BreakGlassAccess(SQLModel, table=True):
    """An emergency access: who, which patient, why; pending until an admin signs it off."""

    __tablename__ = "break_glass_accesses"

    id: str = Field(default_factory=_new_id, primary_key=True, max_length=32)
    user_id: str = Field(index=True, max_length=32)
    patient_id: str = Field(index=True, max_length=32)
    device_id: str = Field(max_length=64)
    grant_jti: str = Field(max_length=64)
    reason: str = Field(max_length=2000)
    opened_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime, index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="pending", max_length=16, index=True)
    reviewed_by: str | None = Field(default=None, max_length=32)
    reviewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    review_note: str | None = Field(default=None, max_length=2000)


class AuditEntryRow(SQLModel, table=True):
    """One hash-chained audit entry. Append-only: no code path updates or deletes a row."""

    __tablename__ = "audit_entries"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ts: str = Field(max_length=32, index=True)
    actor_id: str | None = Field(default=None, max_length=200, index=True)
    actor_role: str | None = Field(default=None, max_length=64)
    authority_jti: str | None = Field(default=None, max_length=200, index=True)
    patient_id: str | None = Field(default=None, max_length=200, index=True)
    data: str = Field(sa_type=Text, description="canonical JSON of AuditData")
    action: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=16, index=True)
    purpose_of_use: str | None = Field(default=None, max_length=32)
    device_id: str | None = Field(default=None, max_length=200, index=True)
    ip: str | None = Field(default=None, max_length=100)
    establishment: str | None = Field(default=None, max_length=200)
    request_id: str | None = Field(default=None, max_length=200)
    consultation_id: str | None = Field(default=None, max_length=200, index=True)
    detail: str = Field(sa_type=Text, description="canonical JSON of the detail object")
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64, unique=True)


class AuditHead(SQLModel, table=True):
    """The one row every append locks: last seq, last hash, Merkle frontier."""

    __tablename__ = "audit_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    seq: int = Field(sa_type=BigInteger)
    entry_hash: str = Field(max_length=64)
    frontier: str = Field(sa_type=Text, description="JSON list of Merkle frontier hashes")


class AuditCheckpointRow(SQLModel, table=True):
    """A signed Merkle tree head over the first ``tree_size`` entries."""

    __tablename__ = "audit_checkpoints"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: str = Field(max_length=64)
    last_entry_hash: str = Field(max_length=64)
    ts: str = Field(max_length=32)
    key_id: str = Field(max_length=100)
    signature: str = Field(max_length=100)
