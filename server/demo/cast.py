"""Who and what the demo story is about: one prison, its admin, a GP, a patient, two devices.

Every name here is made up. The laptop is enrolled with the modem and SIM identifiers the
posture simulator reports, so ``telemed-client join --posture-source simulated:compliant``
works against the demo's server from another terminal too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

from device_policy.policy import DeviceKind, EnrolledIdentity
from device_policy.simulated import SimulatedProfile, simulated_facts
from server.db import session_scope
from server.identity import service as identity
from server.identity.models import Role

ESTABLISHMENT = "HMP Demo"


@dataclass(frozen=True)
class Person:
    """An account the story creates."""

    username: str
    display_name: str
    role: Role


ADMIN = Person("admin", "Healthcare admin", Role.ADMIN)
CLINICIAN = Person("dr.okafor", "Dr Amara Okafor", Role.CLINICIAN)


@dataclass(frozen=True)
class PatientCard:
    """The patient registered for the consultation."""

    prison_number: str = "A1234DM"
    name: str = "Jonah Pell"
    date_of_birth: date = date(1979, 4, 12)
    establishment: str = ESTABLISHMENT


PATIENT = PatientCard()


@dataclass(frozen=True)
class DeviceCard:
    """A device the story enrols (its key is generated when the story runs)."""

    id: str
    kind: DeviceKind
    display_name: str
    serial: str
    model: str
    identifiers: dict[str, str] = field(default_factory=dict)


def _simulator_identifiers() -> dict[str, str]:
    # The simulator's placeholder modem and SIM, as `telemed-device enrol --simulate` shows them.
    facts = simulated_facts(
        SimulatedProfile.COMPLIANT,
        enrolled=EnrolledIdentity(device_id="simulated", device_kind=DeviceKind.PRISON_LAPTOP),
    )
    return {name: str(facts[fact].value) for name, fact in _ID_FACTS.items()}


_ID_FACTS = {"imei": "modem.imei", "iccid": "sim.iccid", "imsi": "sim.imsi"}

LAPTOP = DeviceCard(
    id="laptop-demo-01",
    kind=DeviceKind.PRISON_LAPTOP,
    display_name="Dr Okafor (prison laptop)",
    serial="DEMO-LT-0001",
    model="Demo Rugged 14 LTE",
    identifiers=_simulator_identifiers(),
)
ROOM = DeviceCard(
    id="room-demo-01",
    kind=DeviceKind.ROOM_ENDPOINT,
    display_name="Healthcare room 1",
    serial="DEMO-RM-0001",
    model="Demo Room Kit",
)

DOCUMENT_TITLE = "Discharge summary"
DOCUMENT_TYPE = "discharge"
NOTE_TEXT = (
    "Video review with the patient in healthcare room 1. Wound healing well, no signs of "
    "infection. Continue dressings every two days; review in two weeks."
)


def discharge_summary() -> bytes:
    """The document imported for the patient (plain text, a few kilobytes)."""
    lines = [
        "CITY GENERAL HOSPITAL - DISCHARGE SUMMARY (demo data, fictional)",
        f"Patient: {PATIENT.name}   Prison number: {PATIENT.prison_number}   "
        f"DOB: {PATIENT.date_of_birth.isoformat()}",
        f"Discharged to: {PATIENT.establishment} healthcare centre",
        "",
        "Admitted with a laceration to the left forearm; washed out and closed under local",
        "anaesthetic. Five days of oral antibiotics completed on the ward.",
        "",
        "Plan for the prison healthcare team:",
        "  - dressings every two days; sutures out at day 10",
        "  - video review with the GP at one week",
        "  - return to A&E if redness spreads, fever, or the wound opens",
        "",
    ]
    observations = [
        f"Day {day:2d}: temperature 36.{day % 9} C, pulse {68 + day % 7}, wound clean and dry, pain 2/10."
        for day in range(1, 41)
    ]
    return "\n".join(lines + observations + ["", "Signed: Dr R. Hale, Registrar", ""]).encode()


@dataclass(frozen=True)
class Credentials:
    """The passwords the story generated (kept in memory; on disk only in files of mode 600)."""

    passwords: dict[str, str] = field(repr=False)

    def password(self, person: Person) -> str:
        """The password of one account."""
        return self.passwords[person.username]


def create_accounts(engine: Engine) -> Credentials:
    """Create the admin and the clinician, the way ``telemed init`` / ``telemed user add`` do."""
    passwords: dict[str, str] = {}
    with session_scope(engine) as session:
        for person in (ADMIN, CLINICIAN):
            password = identity.generate_password()
            identity.create_user(
                session=session,
                username=person.username,
                password=password,
                role=person.role,
                display_name=person.display_name,
                establishment=ESTABLISHMENT,
            )
            passwords[person.username] = password
    return Credentials(passwords=passwords)


def write_secret(path: Path, text: str) -> Path:
    """Write a secret to a new file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    return path
