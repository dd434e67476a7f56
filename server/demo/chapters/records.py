"""Record access during the call: a grant bound to the laptop's key, the document read back
intact, a note written — and the same grant refused once the consultation has ended."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from server.demo import cast
from server.demo.api import ApiRefused
from server.demo.context import Context
from server.demo.laptop import RecordAccess
from server.demo.steps import Shown, Unexpected


def records_access(ctx: Context) -> RecordAccess:
    """The GP on the laptop, for record calls."""
    agent = ctx.scene.laptop_agent
    if agent is None:
        raise RuntimeError("the laptop has not attested")
    return RecordAccess(
        ctx.require_api(),
        access_token=ctx.scene.clinician_token,
        agent=agent,
        key=ctx.device(cast.LAPTOP).key,
    )


async def read_document(ctx: Context) -> Shown:
    """Get a grant during the live call and read the imported document back, byte for byte."""
    records = records_access(ctx)
    ctx.scene.grant = grant = await records.grant(ctx.scene.consultation_id)
    content = await records.read_document(ctx.scene.document_id, grant)
    digest = hashlib.sha256(content).hexdigest()
    if digest != ctx.scene.document_sha256 or len(content) != ctx.scene.document_size:
        raise Unexpected("the document read back differs from the one imported")
    minutes = max(1, round((grant.expires_at - datetime.now(UTC)).total_seconds() / 60))
    return Shown(
        f"grant ({grant.scope}, {minutes} min, bound to the laptop key); "
        f"{len(content)} bytes, sha256 {digest[:12]}… matches the import",
        {
            "scope": grant.scope,
            "bytes": len(content),
            "sha256": digest,
            "sha256_matches": True,
        },
    )


async def write_note(ctx: Context) -> Shown:
    """Write the consultation note under the grant."""
    grant = ctx.scene.grant
    if grant is None:
        raise RuntimeError("no grant")
    note = await records_access(ctx).write_note(grant, cast.NOTE_TEXT)
    if note.get("latest_version") != 1 or note.get("consultation_id") != ctx.scene.consultation_id:
        raise Unexpected("the note was not saved as version 1 of this consultation's note")
    return Shown(
        f"note {str(note['id'])[:8]}… version 1 saved (encrypted), linked to the consultation",
        {"note_version": 1},
    )


async def grant_after_end(ctx: Context) -> Shown:
    """Use the same grant after the end: it must be refused."""
    grant = ctx.scene.grant
    if grant is None:
        raise RuntimeError("no grant")
    try:
        await records_access(ctx).read_document(ctx.scene.document_id, grant)
    except ApiRefused as refused:
        return Shown(
            f"reading the document again: refused, {refused.status} {refused.code}",
            {"refused": True, "status": refused.status, "code": refused.code},
        )
    raise Unexpected("the grant still read the document after the consultation ended", refused=False)
