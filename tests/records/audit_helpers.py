"""Append events, export and verify the database log the way the product does, for tests."""

from __future__ import annotations

import io
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlmodel import Session

from records.audit.chain import AuditEntry
from records.audit.export import export_log, verify_export_file
from records.audit.log import EventFields, append_entry, create_checkpoint
from records.audit.verify import VerifyReport


def event(n: int, *, patient: str = "patient-a", action: str = "document.read") -> EventFields:
    """A plausible record-access event numbered ``n``."""
    return EventFields(
        action=action,
        outcome="allowed" if n % 4 else "denied",
        actor_id=f"user-{n % 3}",
        actor_role="clinician",
        authority_jti=f"jti-{n // 5}",
        patient_id=patient,
        document_ids=(f"doc-{n}",),
        purpose_of_use="TREAT",
        device_id="laptop-01",
        ip="10.0.0.7",
        request_id=f"req-{n}",
        consultation_id="consult-1",
        detail={"n": n},
    )


def append_many(
    engine: Engine, count: int, *, start: int = 1, patient: str = "patient-a"
) -> list[AuditEntry]:
    """Append ``count`` events, each in its own committed transaction."""
    entries = []
    for n in range(start, start + count):
        with Session(engine) as session:
            entries.append(append_entry(session=session, event=event(n, patient=patient)))
            session.commit()
    return entries


def checkpoint(engine: Engine, key: Ed25519PrivateKey) -> None:
    """Sign the current head."""
    with Session(engine) as session:
        create_checkpoint(session=session, private_key=key)
        session.commit()


def export_text(engine: Engine, include: Callable[[AuditEntry], bool] | None = None) -> str:
    """The export file's text."""
    out = io.StringIO()
    with Session(engine) as session:
        export_log(session=session, out=out, include=include)
    return out.getvalue()


def verify_text(text: str, key: Ed25519PrivateKey) -> VerifyReport:
    """Verify an export's text offline with the audit public key."""
    return verify_export_file(io.StringIO(text), key.public_key())
