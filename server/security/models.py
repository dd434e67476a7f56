"""Tables for the token signing keys and the token deny-list."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from server.db import UTCDateTime, utcnow


class SigningKey(SQLModel, table=True):
    """An ES256 key pair; the newest active one signs, every unexpired one verifies."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(default="ES256", max_length=16)
    # PEM (PKCS#8) encrypted with the server secret: a database dump alone signs nothing.
    private_pem_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    public_pem: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    verify_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RevokedToken(SQLModel, table=True):
    """A token revoked before its expiry (logout, ended consultation), by ``jti``."""

    __tablename__ = "revoked_tokens"

    jti: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    reason: str = Field(default="", max_length=64)
    revoked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
