"""Request and response bodies. Each view is its own model, so a response can never carry a
field its caller may not see: the public view has no patient at all, the private view (host
and admins) names the patient by prison number only, and only the identity check and the
host's own schedule return name and date of birth — to the host.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field

from server.consultations.join_tokens import ParticipantRole
from server.consultations.states import ConsultationState


class SpecialistIn(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class ConsultationCreate(BaseModel):
    patient_id: str = Field(min_length=1, max_length=32)
    host_user_id: str | None = Field(
        default=None, max_length=32, description="The host clinician; defaults to the caller if a clinician."
    )
    room_device_id: str | None = Field(default=None, max_length=64)
    specialist: SpecialistIn | None = None
    scheduled_start: AwareDatetime
    scheduled_end: AwareDatetime


class CancelRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class EndRequest(BaseModel):
    reason: str = Field(default="ended by host", min_length=1, max_length=200)


class ConsentRequest(BaseModel):
    consent: Literal["verbal"] = "verbal"
    note: str | None = Field(default=None, max_length=500)


class InviteRequest(BaseModel):
    name: str | None = Field(
        default=None, min_length=1, max_length=120, description="Defaults to the booked specialist's name."
    )
    ttl_minutes: int | None = Field(
        default=None, ge=1, le=60 * 24 * 30, description="Defaults to: until the joining window closes."
    )


class RedeemRequest(BaseModel):
    token: str = Field(min_length=1, max_length=256)


class ConsultationPublic(BaseModel):
    """What any participant may know: when, with whom, in what state — nothing about the patient."""

    view: Literal["public"] = "public"
    id: str
    state: ConsultationState
    scheduled_start: datetime
    scheduled_end: datetime
    host_name: str
    has_room: bool
    has_specialist: bool


class ConsultationPrivate(BaseModel):
    """What the host and admins see: the patient by id and prison number, and the timeline."""

    view: Literal["private"] = "private"
    id: str
    state: ConsultationState
    scheduled_start: datetime
    scheduled_end: datetime
    host_name: str
    host_user_id: str
    patient_id: str
    patient_prison_number: str
    room_device_id: str | None
    specialist_name: str | None
    specialist_email: str | None
    identity_confirmed_at: datetime | None
    consent_recorded_at: datetime | None
    opened_at: datetime | None
    live_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    created_at: datetime
    created_by: str


ConsultationView = Annotated[ConsultationPrivate | ConsultationPublic, Field(discriminator="view")]


class PatientIdentityOut(BaseModel):
    """The patient's identity, for the host to read out and check; shown nowhere else."""

    consultation_id: str
    name: str
    prison_number: str
    date_of_birth: date
    identity_confirmed_at: datetime


class InviteCreated(BaseModel):
    """The invite link, shown once: it carries the only copy of the token."""

    invite_id: str
    name: str
    expires_at: datetime
    link: str


class JoinTicketOut(BaseModel):
    """A join token for the signalling socket and the consultation's public view."""

    token: str
    token_type: Literal["join"] = "join"  # noqa: S105 - a label, not a secret
    participant_id: str
    role: ParticipantRole
    name: str
    not_before: datetime
    expires_at: datetime
    consultation: ConsultationPublic


class InvitedBy(BaseModel):
    """Who sent an invite (a clinician or an admin) and their establishment: whom the specialist can ask."""

    name: str
    establishment: str | None


class InviteCheckOut(BaseModel):
    """An unspent invite as its holder may know it before joining; checking does not use it up."""

    status: Literal["early", "open"] = Field(
        description="early: before the joining window opens (start − 15 min); open: it may be redeemed now"
    )
    name: str = Field(description="The name the specialist will join as")
    opens_at: datetime = Field(description="When joining opens: the scheduled start − 15 minutes")
    opens_in_s: int = Field(ge=0, description="Seconds until then by the server's clock (0 when open)")
    expires_at: datetime = Field(description="When the invite stops working if it has not been redeemed")
    consultation: ConsultationPublic
    invited_by: InvitedBy | None


class SchedulePatient(BaseModel):
    """Who the patient is, so the host can tell the day's patients apart (audited when shown)."""

    id: str
    name: str
    prison_number: str
    date_of_birth: date


class ScheduleRoom(BaseModel):
    """The booked healthcare room."""

    id: str
    display_name: str = Field(description="The room's display name, or its id when it has none")


class ScheduleItem(BaseModel):
    """One consultation on the host's own schedule for a day."""

    id: str
    state: ConsultationState
    scheduled_start: datetime
    scheduled_end: datetime
    patient: SchedulePatient
    room: ScheduleRoom | None
    specialist_name: str | None
    identity_confirmed_at: datetime | None
    consent_recorded_at: datetime | None
