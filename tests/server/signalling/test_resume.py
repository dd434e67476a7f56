"""Dropped sockets keep their place for the grace period; a second socket replaces the first."""

from __future__ import annotations

from datetime import timedelta

from records.audit.log import iter_entries
from server.db import session_scope
from tests.support.signalling_scene import Peer, Scene, SceneFactory, audited

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def in_call(scene: Scene) -> tuple[Peer, Peer, str]:
    host = await scene.join_host()
    token = scene.room_token()
    room = await scene.join(token, **scene.posture_fields(scene.room, token))
    await scene.admitted(host, room)
    return host, room, token


async def test_resume_within_the_grace_period_keeps_admission(scene: Scene) -> None:
    host, room, token = await in_call(scene)
    first_resume = room.welcome["resume_token"]

    room.ws.transport.abort()
    dropped = await host.expect("participant.disconnected")
    assert (dropped["participant"]["id"], dropped["participant"]["connected"]) == (room.id, False)

    back = await scene.join(token, resume_token=first_resume, **scene.posture_fields(scene.room, token))
    assert (back.welcome["resumed"], back.welcome["status"]) == (True, "admitted")
    assert back.welcome["resume_token"] != first_resume
    assert [p["id"] for p in back.welcome["participants"]] == [host.id]
    resumed = await host.expect("participant.resumed")
    assert resumed["participant"]["connected"] is True

    await host.send(type="offer", to=room.id, sdp=SDP, connection_id="conn-0001")
    assert (await back.expect("offer"))["from"] == host.id


async def test_a_resume_token_is_single_use(scene: Scene) -> None:
    host, room, token = await in_call(scene)
    used = room.welcome["resume_token"]
    room.ws.transport.abort()
    await host.expect("participant.disconnected")
    back = await scene.join(token, resume_token=used, **scene.posture_fields(scene.room, token))
    assert back.welcome["resumed"] is True

    # The same token again: not a resume. The newcomer replaces the socket but waits.
    again = await scene.join(token, resume_token=used, **scene.posture_fields(scene.room, token))
    assert (again.welcome["resumed"], again.welcome["status"]) == (False, "waiting")
    await back.expect("replaced")
    assert await back.closed() == 4409


async def test_a_second_socket_with_the_resume_token_replaces_the_first_and_keeps_its_place(
    scene: Scene,
) -> None:
    host, room, token = await in_call(scene)
    second = await scene.join(
        token, resume_token=room.welcome["resume_token"], **scene.posture_fields(scene.room, token)
    )
    assert (second.welcome["resumed"], second.welcome["status"]) == (True, "admitted")
    await room.expect("replaced")
    assert await room.closed() == 4409

    await host.send(type="offer", to=room.id, sdp=SDP, connection_id="conn-0002")
    assert (await second.expect("offer"))["connection_id"] == "conn-0002"
    # The replaced socket leaves no trace: the host was never told the room left.
    assert "participant.left" not in [m["type"] for m in await host.sync()]


async def test_a_second_socket_without_the_resume_token_waits_again(scene: Scene) -> None:
    host, room, token = await in_call(scene)
    second = await scene.join(token, **scene.posture_fields(scene.room, token))
    assert second.welcome["status"] == "waiting"
    await room.expect("replaced")
    assert await room.closed() == 4409
    again = await host.expect("participant.joined")
    assert (again["participant"]["id"], again["participant"]["status"]) == (room.id, "waiting")
    refused = await host.request("offer", to=room.id, sdp=SDP, connection_id="conn-0003")
    assert refused["code"] == "not_admitted"


async def test_after_the_grace_period_the_others_are_told_it_left(make_scene: SceneFactory) -> None:
    scene = make_scene(signalling_resume_grace=timedelta(milliseconds=300))
    host, room, token = await in_call(scene)
    room.ws.transport.abort()
    await host.expect("participant.disconnected")
    left = await host.expect("participant.left")
    assert (left["participant"]["id"], left["reason"]) == (room.id, "timeout")
    await audited(scene, ("signalling.left", "success"))

    late = await scene.join(
        token, resume_token=room.welcome["resume_token"], **scene.posture_fields(scene.room, token)
    )
    assert (late.welcome["resumed"], late.welcome["status"]) == (False, "waiting")


async def test_when_the_host_leaves_the_admitted_go_back_to_waiting(scene: Scene) -> None:
    host, room, _ = await in_call(scene)
    assert (await host.request("leave"))["type"] == "ack"
    assert await host.closed() == 1000
    returned = await room.expect("returned")
    assert returned["reason"] == "host_left"
    left = await room.got("participant.left")
    assert left["participant"]["role"] == "host"
    await audited(scene, ("signalling.left", "success"))
    with session_scope(scene.services.engine) as session:
        entry = next(e for e in iter_entries(session=session) if e.action == "signalling.left")
    assert (entry.actor_id, entry.actor_role, entry.detail["reason"]) == (host.id, "host", "left")
    assert entry.consultation_id == scene.consultation_id and entry.patient_id == scene.patient_id

    back = await scene.join_host()
    assert [(p["id"], p["status"]) for p in back.welcome["participants"]] == [(room.id, "waiting")]
