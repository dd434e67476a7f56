"""The waiting room: nobody is admitted but by the host; the host admits, denies, returns, starts, ends."""

from __future__ import annotations

from jose import jwt as jose_jwt

from records.audit.log import iter_entries
from server.db import session_scope
from tests.support.signalling_scene import Scene, audited

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CONN = "conn-0001"

RELAYED = {"offer", "answer", "ice"}


async def test_room_waits_for_a_late_host_who_does_not_admit_it_by_arriving(scene: Scene) -> None:
    room = await scene.join_room()
    assert room.welcome["status"] == "waiting"
    assert room.welcome["participants"] == []
    assert room.welcome["consultation_state"] == "scheduled"

    host = await scene.join_host()
    assert host.welcome["status"] == "admitted"
    assert [(p["id"], p["status"]) for p in host.welcome["participants"]] == [(room.id, "waiting")]
    joined = await room.expect("participant.joined")
    assert joined["participant"]["role"] == "host"

    # Both round-trip the server: had anything admitted the room, it would have arrived by now.
    await host.sync()
    await room.sync()
    assert "admitted" not in room.types()
    assert scene.state() == "open"


async def test_host_admits_and_the_admitted_learn_about_each_other(scene: Scene) -> None:
    host_token = scene.host_token()
    host = await scene.join(host_token)
    room = await scene.join_room()
    joined = await host.expect("participant.joined")
    assert joined["participant"] == {
        "id": room.id,
        "role": "room",
        "name": "room-01 display",
        "status": "waiting",
        "connected": True,
    }

    assert (await host.request("admit", participant=room.id))["type"] == "ack"
    admitted = await room.expect("admitted")
    assert [(p["id"], p["status"]) for p in admitted["participants"]] == [(host.id, "admitted")]

    specialist = await scene.join_specialist()
    # An admitted participant sees the newcomer waiting; the waiting newcomer does not see the room.
    seen = await room.expect("participant.joined")
    assert seen["participant"]["id"] == specialist.id
    assert [p["role"] for p in specialist.welcome["participants"]] == ["host"]

    await audited(scene, ("signalling.joined", "success"), ("signalling.admitted", "success"))
    with session_scope(scene.services.engine) as session:
        entry = next(e for e in iter_entries(session=session) if e.action == "signalling.admitted")
    # Who, on what authority (the host's join token), about which patient, what.
    assert (entry.actor_id, entry.actor_role) == (host.id, "host")
    assert entry.authority_jti == jose_jwt.get_unverified_claims(host_token)["jti"]
    assert entry.patient_id == scene.patient_id
    assert entry.detail["participant"] == room.id


async def test_a_denied_participant_never_receives_an_sdp_and_is_closed(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)
    specialist = await scene.join_specialist()
    await host.expect("participant.joined")

    # Neither the host nor the admitted room can reach the waiting specialist.
    refused = await host.request("offer", to=specialist.id, sdp=SDP, connection_id=CONN)
    assert (refused["type"], refused["code"]) == ("error", "not_admitted")
    refused = await room.request("ice", to=specialist.id, candidate="", connection_id=CONN)
    assert refused["code"] == "not_admitted"

    assert (await host.request("deny", participant=specialist.id, reason="not expected"))["type"] == "ack"
    denied = await specialist.expect("denied")
    assert denied["reason"] == "not expected"
    assert await specialist.closed() == 4403
    assert not RELAYED & set(specialist.types())
    told = await room.expect("participant.denied")
    assert told["participant"]["id"] == specialist.id

    # After the denial the participant is unknown to the relay.
    refused = await host.request("offer", to=specialist.id, sdp=SDP, connection_id=CONN)
    assert refused["code"] == "unknown_participant"
    await audited(scene, ("signalling.denied", "success"))


async def test_a_denied_participant_cannot_come_back_with_its_token(scene: Scene) -> None:
    host = await scene.join_host()
    token = scene.specialist_token()
    specialist = await scene.join(token)
    await host.expect("participant.joined")
    await host.request("deny", participant=specialist.id)
    assert await specialist.closed() == 4403

    again = await scene.connect()
    await again.send(type="hello", join_token=token)
    error = await again.expect("error")
    assert error["code"] == "forbidden"
    assert await again.closed() == 4403


async def test_host_returns_an_admitted_participant_to_the_waiting_room(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)

    ack = await host.request("return_to_waiting", participant=room.id, reason="private word")
    assert ack["type"] == "ack"
    returned = await room.expect("returned")
    assert returned["reason"] == "private word"
    assert (await host.request("offer", to=room.id, sdp=SDP, connection_id=CONN))["code"] == "not_admitted"
    assert (await room.request("offer", to=host.id, sdp=SDP, connection_id=CONN))["code"] == "not_admitted"
    # Returning someone who is waiting names the state that refused.
    again = await host.request("return_to_waiting", participant=room.id)
    assert (again["code"], again["message"]) == (
        "invalid_state",
        'Cannot return to waiting in status "waiting"',
    )
    await audited(scene, ("signalling.returned", "success"))


async def test_only_the_host_admits(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)
    specialist = await scene.join_specialist()
    refused = await room.request("admit", participant=specialist.id)
    assert (refused["type"], refused["code"]) == ("error", "not_host")
    refused = await specialist.request("end")
    assert refused["code"] == "not_host"


async def test_start_needs_identity_and_consent_then_everyone_is_told_it_is_live(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)

    refused = await host.request("start")
    assert refused["code"] == "invalid_state"
    assert refused["message"] == (
        'Cannot start in state "open": the patient\'s identity has not been confirmed'
    )
    assert scene.state() == "open"

    scene.prepare_start()
    assert (await host.request("start"))["type"] == "ack"
    await room.expect("consultation.live")
    await host.got("consultation.live")
    assert scene.state() == "live"
    await audited(scene, ("signalling.started", "success"))


async def test_end_tells_everyone_closes_every_socket_and_nobody_rejoins(scene: Scene) -> None:
    host_token = scene.host_token()
    host = await scene.join(host_token)
    room = await scene.join_room()
    await scene.admitted(host, room)
    specialist = await scene.join_specialist()

    assert (await host.request("end", reason="all done"))["type"] == "ack"
    for peer in (host, room, specialist):
        ended = await peer.got("consultation.ended")
        assert ended["reason"] == "all done"
        assert await peer.closed() == 4410
    assert scene.state() == "ended"
    await audited(scene, ("signalling.ended", "success"))

    late = await scene.connect()
    await late.send(type="hello", join_token=host_token)
    refused = await late.expect("error")
    assert (refused["code"], refused["message"]) == ("consultation_closed", 'Cannot join in state "ended"')
    assert await late.closed() == 4410
