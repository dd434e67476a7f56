"""Every table the server's database holds, imported in one place for Alembic."""

from __future__ import annotations

from sqlmodel import SQLModel

from records.models import Patient
from server.admin.models import AccessSignOff, AdminRecoveryCode, AdminSecondFactor, AdminSession
from server.consultations.models import Consultation, Invite
from server.devices.models import Device
from server.identity.models import RefreshToken, User
from server.security.models import RevokedToken, SigningKey

metadata = SQLModel.metadata

__all__ = [
    "AccessSignOff",
    "AdminRecoveryCode",
    "AdminSecondFactor",
    "AdminSession",
    "Consultation",
    "Device",
    "Invite",
    "Patient",
    "RefreshToken",
    "RevokedToken",
    "SigningKey",
    "User",
    "metadata",
]
