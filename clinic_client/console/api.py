"""The page's JSON API under ``/api`` (docs/console.md, "Agent"): thin, the agent decides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, Field
from starlette.background import BackgroundTask

from clinic_client.console.bridge import Bridge
from clinic_client.console.grants import GrantKeeper
from clinic_client.console.session import ConsoleAgent, q
from clinic_client.records import Grant

T = TypeVar("T")

PATIENT_FIELDS = ("id", "name", "prison_number", "date_of_birth")
IDENTITY_FIELDS = ("name", "prison_number", "date_of_birth", "identity_confirmed_at")
INVITE_FIELDS = ("invite_id", "name", "expires_at", "link")


def get_agent(request: Request) -> ConsoleAgent:
    """The agent this app serves."""
    agent: ConsoleAgent = request.app.state.agent
    return agent


def ready_agent(agent: Annotated[ConsoleAgent, Depends(get_agent)]) -> ConsoleAgent:
    """The agent, once a clinician is signed in on a compliant laptop (else 401/403)."""
    agent.require_ready()
    return agent


AgentDep = Annotated[ConsoleAgent, Depends(get_agent)]
ReadyAgent = Annotated[ConsoleAgent, Depends(ready_agent)]


# --- bodies ---------------------------------------------------------------------------------


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Booking(BaseModel):
    patient_id: str = Field(min_length=1, max_length=32)
    room_device_id: str | None = Field(default=None, max_length=64)
    start: AwareDatetime
    minutes: int = Field(ge=5, le=240)
    specialist_name: str | None = Field(default=None, min_length=1, max_length=120)


class Consent(BaseModel):
    note: str | None = Field(default=None, max_length=500)


class Cancel(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class Invite(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)


class NoteText(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


class NoteVersion(NoteText):
    base_version: int = Field(ge=1)


class Share(BaseModel):
    document_id: str = Field(min_length=1, max_length=64)
    participant_id: str = Field(min_length=1, max_length=80)


def _pick(body: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: body.get(k) for k in fields} if isinstance(body, dict) else {}


# --- routes ---------------------------------------------------------------------------------

router = APIRouter(prefix="/api")


@router.get("/state")
def state(agent: AgentDep) -> dict[str, Any]:
    """Who is signed in, this device, the server and the latest posture."""
    return agent.state()


@router.post("/sign-in")
async def sign_in(body: SignIn, agent: AgentDep) -> dict[str, Any]:
    """Sign in (clinicians only); the new state."""
    return await agent.sign_in(body.username, body.password)


@router.post("/sign-out", status_code=204)
async def sign_out(agent: AgentDep) -> Response:
    """Sign out at the server; tokens and grants forgotten."""
    await agent.sign_out()
    return Response(status_code=204)


@router.post("/device-check")
async def device_check(agent: AgentDep) -> dict[str, Any]:
    """Run the device check now; the posture (a failed check is a 200 with the rules)."""
    return await agent.device_check()


@router.get("/schedule")
async def schedule(agent: ReadyAgent, day: date | None = None) -> Any:
    """The clinician's consultations of a UTC day (the server's list, as is)."""
    return await agent.call("GET", "/api/v1/schedule", params={"day": day.isoformat()} if day else None)


@router.get("/rooms")
async def rooms(agent: ReadyAgent) -> Any:
    """The active room endpoints (the server's list)."""
    return await agent.call("GET", "/api/v1/rooms")


@router.get("/patients/lookup")
async def lookup(
    agent: ReadyAgent, prison_number: Annotated[str, Query(min_length=2, max_length=32)]
) -> dict[str, Any]:
    """A patient by exact prison number: id, name, prison number, date of birth."""
    body = await agent.call("GET", "/api/v1/patients/lookup", params={"prison_number": prison_number})
    return _pick(body, PATIENT_FIELDS)


@router.post("/consultations", status_code=201)
async def book(body: Booking, agent: ReadyAgent) -> Any:
    """Book a consultation hosted by the signed-in clinician; the server's private view."""
    payload: dict[str, Any] = {
        "patient_id": body.patient_id,
        "room_device_id": body.room_device_id,
        "scheduled_start": body.start.isoformat(),
        "scheduled_end": (body.start + timedelta(minutes=body.minutes)).isoformat(),
    }
    if body.specialist_name:
        payload["specialist"] = {"name": body.specialist_name}
    return await agent.call("POST", "/api/v1/consultations", json=payload)


@router.post("/consultations/{consultation_id}/identity-check")
async def identity_check(consultation_id: str, agent: ReadyAgent) -> dict[str, Any]:
    """The patient's identity for the clinician to check with them; records the check."""
    body = await agent.call("POST", f"/api/v1/consultations/{q(consultation_id)}/identity-check")
    return _pick(body, IDENTITY_FIELDS)


@router.post("/consultations/{consultation_id}/consent")
async def consent(consultation_id: str, body: Consent, agent: ReadyAgent) -> Any:
    """Record the patient's verbal consent; the consultation."""
    return await agent.call(
        "POST",
        f"/api/v1/consultations/{q(consultation_id)}/consent",
        json={"consent": "verbal", "note": body.note},
    )


@router.post("/consultations/{consultation_id}/cancel")
async def cancel(consultation_id: str, body: Cancel, agent: ReadyAgent) -> Any:
    """Cancel a consultation before it goes live; the consultation."""
    result = await agent.call(
        "POST", f"/api/v1/consultations/{q(consultation_id)}/cancel", json={"reason": body.reason}
    )
    agent.grants.drop(consultation_id)
    return result


@router.post("/consultations/{consultation_id}/invites", status_code=201)
async def invite(consultation_id: str, body: Invite, agent: ReadyAgent) -> dict[str, Any]:
    """Invite the specialist; the link to copy to them, and its expiry."""
    payload = {"name": body.name} if body.name else {}
    created = await agent.call("POST", f"/api/v1/consultations/{q(consultation_id)}/invites", json=payload)
    return _pick(created, INVITE_FIELDS)


# --- records ----------------------------------------------------------------------------------


async def _with_grant(agent: ConsoleAgent, consultation_id: str, call: Callable[[Grant], Awaitable[T]]) -> T:
    await agent.access_token()  # refreshed before the records client reads it
    keeper: GrantKeeper = agent.grants
    return await keeper.use(consultation_id, call)


@router.get("/consultations/{consultation_id}/records")
async def records(consultation_id: str, agent: ReadyAgent) -> dict[str, Any]:
    """The patient, their documents and notes (the agent gets a grant when first asked)."""

    async def read(grant: Grant) -> dict[str, Any]:
        return {
            "patient": _pick(await agent.records.patient(grant), PATIENT_FIELDS),
            "documents": await agent.records.documents(grant),
            "notes": await agent.records.notes(grant),
            "grant_expires_at": grant.expires_at.isoformat(),
        }

    return await _with_grant(agent, consultation_id, read)


@router.get("/consultations/{consultation_id}/documents/{document_id}/content")
async def document_content(consultation_id: str, document_id: str, agent: ReadyAgent) -> StreamingResponse:
    """A document's bytes, streamed, never cached."""
    upstream = await _with_grant(
        agent, consultation_id, lambda grant: agent.records.open_document(grant, document_id)
    )
    return StreamingResponse(
        upstream.aiter_bytes(),
        media_type=upstream.headers.get("content-type", "application/octet-stream"),
        headers={"Cache-Control": "no-store", "Content-Disposition": "inline"},
        background=BackgroundTask(upstream.aclose),
    )


@router.post("/consultations/{consultation_id}/notes", status_code=201)
async def write_note(consultation_id: str, body: NoteText, agent: ReadyAgent) -> dict[str, Any]:
    """Save this consultation's note (version 1)."""
    return await _with_grant(agent, consultation_id, lambda g: agent.records.write_note(g, body.text))


@router.post("/consultations/{consultation_id}/notes/{note_id}/versions", status_code=201)
async def note_version(
    consultation_id: str, note_id: str, body: NoteVersion, agent: ReadyAgent
) -> dict[str, Any]:
    """Save a new version of a note (409 version_conflict when someone saved after base_version)."""
    return await _with_grant(
        agent,
        consultation_id,
        lambda g: agent.records.add_note_version(g, note_id, body.text, base_version=body.base_version),
    )


@router.post("/consultations/{consultation_id}/shares", status_code=201)
async def share(consultation_id: str, body: Share, agent: ReadyAgent) -> dict[str, Any]:
    """Share one document with the specialist in the call."""
    return await _with_grant(
        agent,
        consultation_id,
        lambda g: agent.records.share(
            g,
            consultation_id=consultation_id,
            document_id=body.document_id,
            participant_id=body.participant_id,
        ),
    )


@router.websocket("/signalling")
async def signalling(websocket: WebSocket) -> None:
    """The signalling bridge (see clinic_client/console/bridge.py)."""
    await Bridge(websocket, websocket.app.state.agent).run()
