"""People who sign in, and their refresh-token families."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from server.db import UTCDateTime, utcnow


class Role(StrEnum):
    """What a user is for; routes state which roles they accept."""

    CLINICIAN = "clinician"
    SPECIALIST = "specialist"
    ADMIN = "admin"


USERNAME_PATTERN = re.compile(r"^[a-z0-9._@-]{3,64}$")


def new_id() -> str:
    """A random, opaque identifier."""
    return uuid.uuid4().hex


class UserBase(SQLModel):
    # Table models are not validated on construction: the service checks USERNAME_PATTERN.
    username: str = Field(index=True, unique=True, min_length=3, max_length=64)
    display_name: str = Field(min_length=1, max_length=120)
    role: Role
    establishment: str | None = Field(default=None, max_length=120)


class User(UserBase, table=True):
    """A person with a login. Room endpoints are devices, not users."""

    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    password_hash: str = Field(max_length=255)
    disabled: bool = False
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserPublic(UserBase):
    """What any API response may say about a user: never the hash or lockout counters."""

    id: str
    disabled: bool
    created_at: datetime


class RefreshToken(SQLModel, table=True):
    """One refresh token of a login session; reuse of a used one revokes the family."""

    __tablename__ = "refresh_tokens"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=32)
    family_id: str = Field(index=True, max_length=32)
    token_hash: str = Field(unique=True, max_length=64)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
