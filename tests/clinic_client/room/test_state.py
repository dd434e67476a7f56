"""What the screen shows for where the room is in its consultation (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clinic_client.room import RoomState, Roster, screen_of
from clinic_client.room.state import Booking
from clinic_client.signalling import ServerEvent

HOST = {"id": "host:u1", "role": "host", "name": "Dr Host", "status": "admitted", "connected": True}
SPECIALIST = {"id": "specialist:i1", "role": "specialist", "name": "Dr Special", "status": "admitted"}
ICE = [{"urls": ["turn:turn.example.org:3478"], "username": "1:room.r1", "credential": "c"}]


def welcome(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "welcome",
        "participant_id": "room:r1",
        "role": "room",
        "status": "waiting",
        "consultation_state": "scheduled",
        "participants": [],
        "ice_servers": ICE,
        "ice_policy": "relay",
    }
    return {**base, **fields}


def event(kind: str, **fields: Any) -> ServerEvent:
    return ServerEvent.from_wire({"v": 1, "type": kind, **fields})


def roster(**fields: Any) -> Roster:
    r = Roster()
    r.welcome(welcome(**fields))
    return r


def test_before_the_clinician_comes_the_screen_says_when_the_appointment_starts() -> None:
    assert screen_of(roster()) == "booked"


@pytest.mark.parametrize(
    "fields",
    [
        {"participants": [{**HOST, "connected": True}]},  # the clinician is here
        {"consultation_state": "open"},  # the clinician opened the call and stepped away
        {"consultation_state": "live"},
    ],
)
def test_once_the_clinician_is_there_the_room_is_told_to_wait_to_be_let_in(fields: dict[str, Any]) -> None:
    assert screen_of(roster(**fields)) == "waiting"


def test_the_clinician_arriving_and_leaving_keeps_the_room_waiting() -> None:
    r = roster()
    r.apply(event("participant.joined", participant={**HOST, "status": "admitted"}))
    assert screen_of(r) == "waiting"
    r.apply(event("participant.left", participant=HOST, reason="left"))
    assert screen_of(r) == "waiting"  # not "starts at 14:30" again: the clinician has been


def test_admitted_is_the_call_with_the_clinician_first() -> None:
    r = roster()
    r.apply(event("admitted", participants=[SPECIALIST, HOST, {**HOST, "id": "room:r1", "role": "room"}]))
    assert screen_of(r) == "call"
    assert [p.id for p in r.in_call()] == ["host:u1", "specialist:i1"]  # never itself
    wire = RoomState("call", roster=r).to_wire()
    assert wire["call"] == {
        "me": "room:r1",
        "others": [
            {"id": "host:u1", "role": "host", "name": "Dr Host", "connected": True},
            {"id": "specialist:i1", "role": "specialist", "name": "Dr Special", "connected": True},
        ],
        "ice_servers": ICE,
        "ice_policy": "relay",
    }


def test_someone_sent_back_or_leaving_drops_out_of_the_call() -> None:
    r = roster()
    r.apply(event("admitted", participants=[HOST, SPECIALIST]))
    r.apply(event("participant.left", participant=SPECIALIST))
    assert [p.id for p in r.in_call()] == ["host:u1"]
    r.apply(event("returned", reason="host_left"))
    assert screen_of(r) == "waiting"
    assert RoomState("waiting", roster=r).to_wire()["call"] is None


def test_fresh_turn_credentials_are_used_for_the_next_connection() -> None:
    r = roster()
    r.apply(event("admitted", participants=[HOST]))
    fresh = [{"urls": ["turn:turn.example.org:3478"], "username": "2:room.r1", "credential": "d"}]
    r.apply(event("ice_servers", ice_servers=fresh, ice_policy="relay", expires_at=2))
    assert RoomState("call", roster=r).to_wire()["call"]["ice_servers"] == fresh


@pytest.mark.parametrize(
    ("kind", "fields", "screen"),
    [
        ("consultation.ended", {"reason": "done"}, "ended"),
        ("denied", {"reason": "not now"}, "ended"),
        ("suspended", {"reason": "posture_expired"}, "reconnecting"),
    ],
)
def test_the_end_a_refusal_and_a_pause(kind: str, fields: dict[str, Any], screen: str) -> None:
    r = roster()
    r.apply(event("admitted", participants=[HOST]))
    r.apply(event(kind, **fields))
    assert screen_of(r) == screen
    assert RoomState(screen_of(r), roster=r).to_wire()["call"] is None  # no media when not admitted


def test_a_lost_link_in_a_call_keeps_the_call_for_the_page() -> None:
    r = roster()
    r.apply(event("admitted", participants=[HOST]))
    wire = RoomState("reconnecting", reason="server", roster=r).to_wire()
    assert wire["screen"] == "reconnecting"
    assert wire["call"] is not None and wire["call"]["others"][0]["id"] == "host:u1"


def test_the_state_names_the_clinician_and_the_start_and_nothing_else() -> None:
    start = datetime(2026, 3, 6, 14, 30, tzinfo=UTC)
    booking = Booking("c1", "Dr Host", start, None)
    wire = RoomState("booked", booking=booking, roster=roster()).to_wire()
    assert wire == {
        "type": "room.state",
        "screen": "booked",
        "reason": None,
        "clinician": "Dr Host",
        "starts_at": "2026-03-06T14:30:00+00:00",
        "call": None,
    }
    assert RoomState("idle").to_wire()["clinician"] is None
