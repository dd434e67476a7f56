"""Tables owned by the records library (patients here; documents, notes, grants and audit beside them)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import DateTime
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class PatientBase(SQLModel):
    prison_number: str = Field(
        index=True, unique=True, min_length=2, max_length=32, regex=r"^[A-Za-z0-9/-]+$"
    )
    name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    establishment: str = Field(min_length=1, max_length=120)


class Patient(PatientBase, table=True):
    """A person in prison care. Identified by an opaque id everywhere but their own record."""

    __tablename__ = "patients"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))


class PatientPublic(PatientBase):
    """A patient as shown to someone entitled to see who they are."""

    id: str
