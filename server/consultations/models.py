"""Tables: consultations and the single-use invites that bring a specialist in."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.consultations.states import ConsultationState
from server.db import UTCDateTime, utcnow
from server.identity.models import new_id

# Stored as the readable value in a VARCHAR (no database enum type), so a new state is a
# code change, not an ALTER TYPE on PostgreSQL.
_STATE_TYPE = sa.Enum(
    ConsultationState,
    name="consultationstate",
    native_enum=False,
    length=16,
    values_callable=lambda states: [s.value for s in states],
)


class Consultation(SQLModel, table=True):
    """One booked video consultation between a host clinician and a patient's room or a specialist."""

    __tablename__ = "consultations"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    patient_id: str = Field(foreign_key="patients.id", index=True, max_length=32)
    host_user_id: str = Field(foreign_key="users.id", index=True, max_length=32)
    room_device_id: str | None = Field(default=None, foreign_key="devices.id", index=True, max_length=64)
    specialist_name: str | None = Field(default=None, max_length=120)
    specialist_email: str | None = Field(default=None, max_length=254)
    scheduled_start: datetime = Field(sa_type=UTCDateTime, index=True)
    scheduled_end: datetime = Field(sa_type=UTCDateTime)
    state: ConsultationState = Field(default=ConsultationState.SCHEDULED, sa_type=_STATE_TYPE)

    identity_confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    identity_confirmed_by: str | None = Field(default=None, max_length=32)
    consent_recorded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent_recorded_by: str | None = Field(default=None, max_length=32)
    consent_kind: str | None = Field(default=None, max_length=16)
    consent_note: str | None = Field(default=None, max_length=500)

    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    live_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_by: str | None = Field(default=None, max_length=32)
    end_reason: str | None = Field(default=None, max_length=200)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_by: str | None = Field(default=None, max_length=32)
    cancel_reason: str | None = Field(default=None, max_length=500)

    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(max_length=32)

    @property
    def identity_confirmed(self) -> bool:
        """True once the host has checked the patient's identity."""
        return self.identity_confirmed_at is not None

    @property
    def consent_recorded(self) -> bool:
        """True once the host has recorded the patient's consent."""
        return self.consent_recorded_at is not None


class Invite(SQLModel, table=True):
    """A single-use, expiring invitation for a remote specialist; only the token's hash is kept."""

    __tablename__ = "invites"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    consultation_id: str = Field(foreign_key="consultations.id", index=True, max_length=32)
    name: str = Field(max_length=120)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(max_length=32)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
