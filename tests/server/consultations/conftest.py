"""A small clinic to book consultations in: an admin, two clinicians, a patient, a room and a laptop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from records.models import Patient
from server.consultations.models import Consultation
from server.db import session_scope, utcnow
from server.devices.models import Device, DeviceKind
from server.errors import AccessDenied, InvalidState
from server.identity.models import Role
from server.services import Services
from tests.server.consultations.audit_trail import AuditTrail
from tests.server.factories import add_user, bearer, login

PATIENT_NAME = "Ada Quillfeather"
PRISON_NUMBER = "A1234BC"
PATIENT_DOB = date(1980, 2, 3)
ESTABLISHMENT = "HMP Example"


def add_device(services: Services, device_id: str, kind: DeviceKind, **over: Any) -> str:
    """Put an enrolled device straight into the database (enrolment itself is not under test here)."""
    with session_scope(services.engine) as session:
        values: dict[str, Any] = {
            "id": device_id,
            "kind": kind,
            "display_name": f"{device_id} display",
            "serial": f"SN-{device_id}",
            "model": "Test model",
            "establishment": ESTABLISHMENT,
            "public_key": "k" * 43,
            "key_thumbprint": f"t-{device_id}",
            **over,
        }
        session.add(Device(**values))
    return device_id


def add_patient(services: Services, prison_number: str = PRISON_NUMBER, name: str = PATIENT_NAME) -> str:
    """Put a patient straight into the database."""
    with session_scope(services.engine) as session:
        patient = Patient(
            prison_number=prison_number, name=name, date_of_birth=PATIENT_DOB, establishment=ESTABLISHMENT
        )
        session.add(patient)
        session.flush()
        return patient.id


@contextmanager
def hub_scope(services: Services) -> Iterator[Session]:
    """A session as the signalling hub's adapter opens one: committed on success and on a refusal,
    because the services record refusals as audit events."""
    with Session(services.engine, expire_on_commit=False) as session:
        try:
            yield session
        except (AccessDenied, InvalidState):
            session.commit()
            raise
        except BaseException:
            session.rollback()
            raise
        session.commit()


def set_times(services: Services, consultation_id: str, *, start: datetime, end: datetime) -> None:
    """Move a booking in time, as if the clock had moved on (the API refuses bookings in the past)."""
    with session_scope(services.engine) as session:
        row = session.get(Consultation, consultation_id)
        assert row is not None
        row.scheduled_start, row.scheduled_end = start, end
        session.add(row)


@dataclass
class Clinic:
    client: TestClient
    services: Services
    admin_id: str
    host_id: str
    other_id: str
    patient_id: str
    room_id: str
    laptop_id: str

    # Signing in costs a password hash check: only for the users a test acts as.
    @cached_property
    def admin(self) -> dict[str, str]:
        return bearer(login(self.client, "root")["access_token"])

    @cached_property
    def host(self) -> dict[str, str]:
        return bearer(login(self.client, "doctor")["access_token"])

    @cached_property
    def other(self) -> dict[str, str]:
        return bearer(login(self.client, "nurse")["access_token"])

    def body(self, **over: Any) -> dict[str, Any]:
        """A valid booking body: the host, the room, one hour starting in an hour."""
        start = utcnow() + timedelta(hours=1)
        body: dict[str, Any] = {
            "patient_id": self.patient_id,
            "host_user_id": self.host_id,
            "room_device_id": self.room_id,
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=1)).isoformat(),
        }
        body.update(over)
        return body

    def schedule(self, headers: dict[str, str] | None = None, **over: Any) -> httpx.Response:
        """POST a booking (as the host unless told otherwise)."""
        return self.client.post("/api/v1/consultations", json=self.body(**over), headers=headers or self.host)

    def book(self, **over: Any) -> dict[str, Any]:
        """Book and return the created consultation."""
        resp = self.schedule(**over)
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created

    def post(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        """POST to ``/api/v1/consultations/<path>`` as the host unless told otherwise."""
        return self.client.post(f"/api/v1/consultations/{path}", headers=headers or self.host, **kw)

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self.client.get(f"/api/v1/consultations{path}", headers=headers or self.host, **kw)


@pytest.fixture
def clinic(client: TestClient, services: Services) -> Clinic:
    admin_id = add_user(services, "root", role=Role.ADMIN)
    host_id = add_user(services, "doctor", display_name="Dr Host")
    other_id = add_user(services, "nurse", display_name="Nurse Other")
    return Clinic(
        client=client,
        services=services,
        admin_id=admin_id,
        host_id=host_id,
        other_id=other_id,
        patient_id=add_patient(services),
        room_id=add_device(services, "room-01", DeviceKind.ROOM_ENDPOINT),
        laptop_id=add_device(services, "laptop-01", DeviceKind.PRISON_LAPTOP),
    )


@pytest.fixture
def audit(services: Services) -> AuditTrail:
    return AuditTrail(services)
