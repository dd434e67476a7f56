"""Setting up the clinic: the server, the first accounts, a patient and a document, two
enrolled devices, and the booking — as ``telemed init`` and an admin and a GP would."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from device_policy.keys import generate_device_key, key_thumbprint, public_key_b64, save_private_key
from server.demo import cast
from server.demo.api import Api, bearer
from server.demo.context import CONSULTATION_LENGTH, Context, Device
from server.demo.embedded import EmbeddedServer
from server.demo.steps import Shown, Unexpected


async def start_server(ctx: Context) -> Shown:
    """Start the server on embedded defaults in the data directory."""
    ctx.server = EmbeddedServer(ctx.options.data_dir)
    await asyncio.to_thread(ctx.server.start)
    ctx.api = Api(ctx.server.base_url)
    health = await ctx.api.json("GET", "/readyz")
    if health.get("status") != "ready":
        raise Unexpected(f"/readyz says {health.get('status')!r}")
    settings = ctx.server.settings
    return Shown(
        f"{ctx.server.base_url} · SQLite, in-process bus, {settings.environment.value} mode",
        {
            "url": ctx.server.base_url,
            "database": "sqlite",
            "bus": "in-process",
            "environment": settings.environment.value,
        },
    )


async def create_accounts(ctx: Context) -> Shown:
    """Create the admin and the GP (as telemed init does) and sign both in through the API."""
    server = ctx.require_server()
    assert server.services is not None  # noqa: S101 - checked by _server
    credentials = await asyncio.to_thread(cast.create_accounts, server.services.engine)
    ctx.scene.credentials = credentials
    api = ctx.require_api()
    ctx.scene.admin_token = await api.login(cast.ADMIN.username, credentials.password(cast.ADMIN))
    ctx.scene.clinician_token = await api.login(cast.CLINICIAN.username, credentials.password(cast.CLINICIAN))
    for person in (cast.ADMIN, cast.CLINICIAN):
        cast.write_secret(ctx.demo_dir / f"{person.username}.password", credentials.password(person))
    me = await api.json("GET", "/api/v1/me", headers=bearer(ctx.scene.clinician_token))
    if me.get("role") != "clinician":
        raise Unexpected(f"the clinician signed in with role {me.get('role')!r}")
    return Shown(
        f"{cast.ADMIN.username} (admin) and {cast.CLINICIAN.username} (clinician) created and signed in",
        {"admin": cast.ADMIN.username, "clinician": cast.CLINICIAN.username},
    )


async def import_patient(ctx: Context) -> Shown:
    """Register the patient and import a document through the admin API."""
    api, admin = ctx.require_api(), bearer(ctx.scene.admin_token)
    card = cast.PATIENT
    patient = await api.json(
        "POST",
        "/api/v1/patients",
        json={
            "prison_number": card.prison_number,
            "name": card.name,
            "date_of_birth": card.date_of_birth.isoformat(),
            "establishment": card.establishment,
        },
        headers=admin,
    )
    ctx.scene.patient_id = str(patient["id"])
    content = cast.discharge_summary()
    document = await api.json(
        "POST",
        f"/api/v1/records/patients/{ctx.scene.patient_id}/documents",
        params={
            "doc_type": cast.DOCUMENT_TYPE,
            "title": cast.DOCUMENT_TITLE,
            "document_date": datetime.now(UTC).date().isoformat(),
            "author": "Dr R. Hale",
        },
        content=content,
        headers={**admin, "Content-Type": "text/plain"},
    )
    expected = hashlib.sha256(content).hexdigest()
    if document["sha256"] != expected or document["size"] != len(content):
        raise Unexpected("the server's size or SHA-256 of the imported document differs from the file's")
    ctx.scene.document_id = str(document["id"])
    ctx.scene.document_sha256 = expected
    ctx.scene.document_size = len(content)
    return Shown(
        f"patient {card.prison_number}; {cast.DOCUMENT_TITLE.lower()} {len(content)} bytes, "
        f"sha256 {expected[:12]}…, encrypted at rest",
        {
            "prison_number": card.prison_number,
            "document_bytes": len(content),
            "document_sha256": expected,
        },
    )


async def enrol_devices(ctx: Context) -> Shown:
    """Generate device keys and enrol the laptop and the room endpoint through the admin API."""
    api, admin = ctx.require_api(), bearer(ctx.scene.admin_token)
    shown: list[str] = []
    for card in (cast.LAPTOP, cast.ROOM):
        key = generate_device_key()
        key_file = save_private_key(_private_dir(ctx.demo_dir) / f"{card.id}.pem", key)
        enrolled = await api.json(
            "POST",
            "/api/v1/devices",
            json={
                "id": card.id,
                "kind": card.kind.value,
                "public_key": public_key_b64(key.public_key()),
                "serial": card.serial,
                "model": card.model,
                "establishment": cast.ESTABLISHMENT,
                "display_name": card.display_name,
                **card.identifiers,
            },
            headers=admin,
        )
        if enrolled["key_thumbprint"] != key_thumbprint(key.public_key()) or enrolled["status"] != "active":
            raise Unexpected(f"{card.id} was not enrolled as an active device with its key")
        ctx.scene.devices[card.id] = Device(card=card, key=key, key_file=key_file)
        shown.append(f"{card.id} ({card.kind.value})")
    return Shown(
        f"{' and '.join(shown)}; Ed25519 keys generated on the devices",
        {"laptop": cast.LAPTOP.id, "room": cast.ROOM.id},
    )


async def schedule(ctx: Context) -> Shown:
    """The GP books the consultation in the room, now to +30 minutes."""
    start = datetime.now(UTC)
    booked = await ctx.require_api().json(
        "POST",
        "/api/v1/consultations",
        json={
            "patient_id": ctx.scene.patient_id,
            "room_device_id": cast.ROOM.id,
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + CONSULTATION_LENGTH).isoformat(),
        },
        headers=bearer(ctx.scene.clinician_token),
    )
    ctx.scene.consultation_id = str(booked["id"])
    if booked.get("state") != "scheduled":
        raise Unexpected(f"the new consultation is {booked.get('state')!r}, not scheduled")
    minutes = int(CONSULTATION_LENGTH.total_seconds() // 60)
    return Shown(
        f"{cast.CLINICIAN.username} hosts, patient in {cast.ROOM.id}, now → +{minutes} min; scheduled",
        {"consultation_id": ctx.scene.consultation_id, "state": "scheduled"},
    )


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
