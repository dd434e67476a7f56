"""Bad messages get an error with a code; the socket (and the call) survive where they safely can."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from server.consultations import service as consultations
from server.consultations.join_tokens import ParticipantRole, issue_join_token
from server.db import session_scope, utcnow
from tests.support.signalling_scene import Peer, Scene, SceneFactory

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def in_call(scene: Scene) -> tuple[Peer, Peer]:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)
    return host, room


async def still_relaying(host: Peer, room: Peer, n: int) -> None:
    connection_id = f"conn-{n:04d}"
    await host.send(type="offer", to=room.id, sdp=SDP, connection_id=connection_id)
    assert (await room.expect("offer"))["connection_id"] == connection_id


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        ("{not json", "bad_json", None),
        ("[1, 2]", "invalid_message", None),
        (json.dumps({"v": 2, "type": "ping", "id": "a1"}), "unsupported_version", "a1"),
        (json.dumps({"type": "ping", "id": "a2"}), "unsupported_version", "a2"),
        (json.dumps({"v": 1, "type": "teleport", "id": "a3"}), "unknown_type", "a3"),
        (json.dumps({"v": 1, "type": "offer", "id": "a4", "to": "host:x"}), "invalid_message", "a4"),
        (
            json.dumps({"v": 1, "type": "admit", "id": "a5", "participant": "no spaces"}),
            "invalid_message",
            "a5",
        ),
        (json.dumps({"v": 1, "type": "ping", "id": "a6", "extra": 1}), "invalid_message", "a6"),
        (json.dumps({"v": 1, "type": "hello", "id": "a7", "join_token": "x"}), "already_joined", "a7"),
    ],
)
async def test_a_bad_message_gets_its_error_code_and_the_call_goes_on(
    scene: Scene, frame: str, code: str, ref: str | None
) -> None:
    host, room = await in_call(scene)
    await room.send_raw(frame)
    error = await room.expect("error")
    assert (error["code"], error["ref"]) == (code, ref)
    await still_relaying(host, room, 1)
    await still_relaying(host, room, 2)


async def test_an_invalid_message_names_the_fields_not_their_values(scene: Scene) -> None:
    host, room = await in_call(scene)
    secret_sdp = "v=0 secret-looking-value"
    await host.send(type="offer", id="q1", to=room.id, sdp=secret_sdp, connection_id="bad id!")
    error = await host.expect("error")
    assert error["message"] == "Invalid offer message: connection_id"
    assert "secret-looking-value" not in json.dumps(error)


async def test_oversize_and_binary_frames_are_refused_and_the_socket_survives(scene: Scene) -> None:
    host, room = await in_call(scene)
    await host.send(type="offer", id="big", to=room.id, sdp="a" * 70_000, connection_id="conn-0001")
    error = await host.expect("error")
    assert (error["code"], error["ref"]) == ("message_too_large", None)
    await host.send_raw(b"\x00\x01binary")
    assert (await host.expect("error"))["code"] == "binary_not_supported"
    await still_relaying(host, room, 3)


async def test_the_first_message_must_be_hello(scene: Scene) -> None:
    peer = await scene.connect()
    await peer.send(type="offer", id="early", to="host:x", sdp=SDP, connection_id="conn-0001")
    error = await peer.expect("error")
    assert (error["code"], error["ref"]) == ("hello_required", "early")
    assert await peer.closed() == 4400


async def test_a_socket_that_never_says_hello_is_closed(scene: Scene) -> None:
    peer = await scene.connect()
    error = await peer.expect("error")
    assert error["code"] == "hello_timeout"
    assert await peer.closed() == 4408


@pytest.mark.parametrize("token", ["not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJob3N0OngifQ."])
async def test_a_bad_join_token_is_refused_with_4401(scene: Scene, token: str) -> None:
    peer = await scene.connect()
    await peer.send(type="hello", join_token=token)
    assert (await peer.expect("error"))["code"] == "unauthenticated"
    assert await peer.closed() == 4401


async def test_a_stream_of_bad_messages_closes_the_socket(scene: Scene) -> None:
    host, room = await in_call(scene)
    for _ in range(40):
        await room.send_raw("{")
    assert await room.closed() == 4429
    assert "too_many_errors" in [m.get("code") for m in room.seen]
    left = await host.expect("participant.disconnected")
    assert left["participant"]["id"] == room.id


async def test_too_many_messages_are_rate_limited_without_closing(make_scene: SceneFactory) -> None:
    scene = make_scene(signalling_rate_per_s=0.5, signalling_burst=5)
    host, room = await in_call(scene)
    for n in range(8):
        await room.send(type="ice", id=f"r{n}", to=host.id, candidate="")
    codes = [m.get("code") for m in [await room.expect("error") for _ in range(3)]]
    assert codes == ["rate_limited"] * 3
    relayed = [m for m in await host.sync() if m["type"] == "ice"]
    assert 1 <= len(relayed) <= 5


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_join_token_is_refused_at_hello_outside_its_consultations_window(
    scene: Scene, when: str
) -> None:
    if when == "before":
        # Booked to start in 90 minutes: its tokens become valid 15 minutes before that.
        start = utcnow() + timedelta(minutes=90)
        with session_scope(scene.services.engine) as session:
            booked = consultations.schedule_consultation(
                session=session,
                patient_id=scene.patient_id,
                host_user_id=scene.host_user_id,
                room_device_id=None,
                specialist=("Dr Specialist", None),
                start=start,
                end=start + timedelta(hours=1),
                created_by=scene.host_user_id,
            )
        token = scene.host_token(booked.id)
    else:
        # Ended three hours ago: its tokens lapsed 30 minutes after the end. The service no
        # longer hands one out (see test_join_tokens), so mint what an old token looked like.
        with session_scope(scene.services.engine) as session:
            consultation = consultations.get_consultation(
                session=session, consultation_id=scene.consultation_id
            )
        start = utcnow() - timedelta(hours=5)
        consultation.scheduled_start, consultation.scheduled_end = start, start + timedelta(hours=2)
        token = issue_join_token(
            jwt=scene.services.jwt,
            consultation=consultation,
            participant_id=f"host:{scene.host_user_id}",
            role=ParticipantRole.HOST,
            name="Dr Host",
        )
    peer = await scene.connect()
    await peer.send(type="hello", join_token=token)
    error = await peer.expect("error")
    assert error["code"] == "unauthenticated"
    if when == "after":
        assert error["message"] == "The token has expired"
    assert await peer.closed() == 4401
    assert "welcome" not in peer.types()
