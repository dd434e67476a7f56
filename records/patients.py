"""Patients: registration and lookup by staff, every lookup audited.

Admins register patients and list them; clinicians and admins may look one up by exact
prison number (to book a consultation). Looking up a number that does not exist and
one the caller may not see answer the same.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlmodel import Session, col, select

from records.decisions import Who, allow, refuse
from records.errors import NotFoundOrDenied
from records.grants import ActiveGrant
from records.models import Patient
from records.ports import Actor, RequestMeta
from records.service_errors import AlreadyRegistered

__all__ = [
    "PatientCreate",
    "create_patient",
    "find_patient",
    "get_patient_for_grant",
    "list_patients",
]

ADMIN = "admin"
STAFF = frozenset({"admin", "clinician"})


class PatientCreate(BaseModel):
    """What an admin sends to register a patient."""

    prison_number: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9/-]+$")
    name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    establishment: str = Field(min_length=1, max_length=120)


def _who(actor: Actor) -> Who:
    return Who(actor_id=actor.user_id, actor_role=actor.role, establishment=actor.establishment)


def create_patient(
    *, session: Session, actor: Actor, data: PatientCreate, meta: RequestMeta | None = None
) -> Patient:
    """Register a patient (admins only; callers check the role)."""
    patient = Patient(
        prison_number=data.prison_number.upper(),
        name=data.name.strip(),
        date_of_birth=data.date_of_birth,
        establishment=data.establishment.strip(),
    )
    session.add(patient)
    try:
        session.flush()
    except DbIntegrityError:
        refuse(
            AlreadyRegistered("A patient with that prison number is already registered"),
            session=session,
            who=_who(actor),
            meta=meta,
            action="patient.create",
            outcome="failure",
        )
    allow(
        session=session,
        who=_who(actor),
        meta=meta,
        action="patient.create",
        outcome="success",
        patient_id=patient.id,
        purpose_of_use="HOPERAT",
    )
    return patient


def find_patient(
    *, session: Session, actor: Actor, prison_number: str, meta: RequestMeta | None = None
) -> Patient:
    """The patient with this exact prison number (staff only); unknown and forbidden look the same."""
    patient = session.exec(select(Patient).where(Patient.prison_number == prison_number.upper())).first()
    if patient is None or actor.role not in STAFF:
        refuse(
            NotFoundOrDenied(),
            session=session,
            who=_who(actor),
            meta=meta,
            action="patient.lookup",
            purpose_of_use="HOPERAT",
        )
    allow(
        session=session,
        who=_who(actor),
        meta=meta,
        action="patient.lookup",
        patient_id=patient.id,
        purpose_of_use="HOPERAT",
    )
    return patient


def list_patients(
    *, session: Session, actor: Actor, limit: int = 50, offset: int = 0, meta: RequestMeta | None = None
) -> list[Patient]:
    """Registered patients by prison number (admins only; callers check the role)."""
    patients = list(
        session.exec(select(Patient).order_by(col(Patient.prison_number)).offset(offset).limit(limit)).all()
    )
    allow(
        session=session,
        who=_who(actor),
        meta=meta,
        action="patient.list",
        purpose_of_use="HOPERAT",
        detail={"count": len(patients), "offset": offset},
    )
    return patients


def get_patient_for_grant(
    *, session: Session, grant: ActiveGrant, patient_id: str, meta: RequestMeta | None = None
) -> Patient:
    """The grant's patient's demographics; any other patient is not found."""
    patient = session.get(Patient, patient_id)
    if patient is None or patient.id != grant.patient_id:
        refuse(
            NotFoundOrDenied(),
            session=session,
            who=grant.who,
            meta=meta,
            action="patient.view",
            authority_jti=grant.jti,
            patient_id=grant.patient_id,
            consultation_id=grant.consultation_id,
            purpose_of_use=grant.purpose,
            detail={"requested": patient_id[:64]},
        )
    allow(
        session=session,
        who=grant.who,
        meta=meta,
        action="patient.view",
        authority_jti=grant.jti,
        patient_id=patient.id,
        consultation_id=grant.consultation_id,
        purpose_of_use=grant.purpose,
    )
    return patient
