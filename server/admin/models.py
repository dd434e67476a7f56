"""Tables of the admin console: second factors, recovery codes, console sessions, access sign-offs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, LargeBinary
from sqlmodel import Field, SQLModel

from server.db import UTCDateTime, utcnow
from server.identity.models import new_id


class SessionStage(StrEnum):
    """How far a console session has got: only ``active`` reaches the console."""

    SECOND_FACTOR = "second_factor"  # password accepted; a TOTP or recovery code is due
    ENROL = "enrol"  # password accepted; no second factor yet: enrolment only
    ACTIVE = "active"  # both factors: the console


class AdminSecondFactor(SQLModel, table=True):
    """An admin's TOTP secret (encrypted with the server secret) and the last time step used."""

    __tablename__ = "admin_second_factors"

    user_id: str = Field(foreign_key="users.id", primary_key=True, max_length=32)
    secret_encrypted: bytes = Field(sa_type=LargeBinary)
    enrolled_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The highest RFC 6238 time step accepted so far: a code for it, or any earlier step, is a replay.
    last_step: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class AdminRecoveryCode(SQLModel, table=True):
    """One single-use recovery code, stored as the SHA-256 of its normalised text."""

    __tablename__ = "admin_recovery_codes"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=32)
    code_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AdminSession(SQLModel, table=True):
    """A console session: the cookie holds a random token, the table only its SHA-256."""

    __tablename__ = "admin_sessions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    token_hash: str = Field(unique=True, max_length=64)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=32)
    stage: str = Field(max_length=16, description="a SessionStage value")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=32)
    ip: str | None = Field(default=None, max_length=100)
    user_agent: str | None = Field(default=None, max_length=200)
    # A TOTP secret offered during enrolment, encrypted like the enrolled one; kept until confirmed.
    pending_secret: bytes | None = Field(default=None, sa_type=LargeBinary)


class AccessSignOff(SQLModel, table=True):
    """An admin's sign-off of one audit entry: a record access made outside any consultation."""

    __tablename__ = "admin_access_sign_offs"

    entry_seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    decision: str = Field(max_length=16, description="reviewed or escalated")
    comment: str = Field(default="", max_length=2000)
    reviewer_id: str = Field(foreign_key="users.id", max_length=32)
    reviewed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
