"""Devices show their posture at join and keep it fresh; a lapse or a refusal suspends them."""

from __future__ import annotations

from datetime import timedelta

from tests.support.signalling_scene import Peer, Scene, audited

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def test_a_room_without_a_posture_token_is_refused(scene: Scene) -> None:
    peer = await scene.connect()
    await peer.send(type="hello", join_token=scene.room_token())
    error = await peer.expect("error")
    assert error["code"] == "posture_required"
    assert await peer.closed() == 4403


async def test_a_posture_token_of_another_device_is_refused(scene: Scene) -> None:
    token = scene.room_token()
    peer = await scene.connect()
    await peer.send(type="hello", join_token=token, **scene.posture_fields(scene.laptop, token))
    assert (await peer.expect("error"))["code"] == "forbidden"
    assert await peer.closed() == 4403


async def test_a_proof_signed_for_another_join_is_refused(scene: Scene) -> None:
    token = scene.room_token()
    other_join = scene.room_token()
    peer = await scene.connect()
    await peer.send(type="hello", join_token=token, **scene.posture_fields(scene.room, other_join))
    error = await peer.expect("error")
    assert error["code"] == "posture_refused"
    assert error["message"].startswith("invalid_proof")
    assert await peer.closed() == 4403


async def test_the_welcome_says_relay_only_for_devices_and_when_posture_expires(scene: Scene) -> None:
    room = await scene.join_room()
    assert room.welcome["ice_policy"] in ("relay", "all")
    assert isinstance(room.welcome["posture_expires_at"], int)
    specialist = await scene.join_specialist()
    assert specialist.welcome["posture_expires_at"] is None
    assert specialist.welcome["ice_policy"] == "all"


async def test_a_lapsed_posture_suspends_and_a_fresh_one_brings_the_device_back_to_waiting(
    scene: Scene,
) -> None:
    host = await scene.join_host()
    token = scene.room_token()
    room = await scene.join(token, **scene.posture_fields(scene.room, token, ttl=timedelta(seconds=2)))
    await scene.admitted(host, room)

    suspended = await room.expect("suspended")
    assert suspended["reason"] == "posture_expired"
    told = await host.expect("participant.suspended")
    assert (told["participant"]["id"], told["participant"]["status"]) == (room.id, "suspended")
    assert (await host.request("offer", to=room.id, sdp=SDP, connection_id="conn-0001"))[
        "code"
    ] == "not_admitted"
    assert (await room.request("offer", to=host.id, sdp=SDP, connection_id="conn-0001"))[
        "code"
    ] == "suspended"
    await audited(scene, ("signalling.suspended", "denied"))

    accepted = await room.request("posture", **scene.posture_fields(scene.room, token))
    assert accepted["type"] == "posture.accepted"
    assert (await room.expect("returned"))["reason"] == "posture_restored"
    back = await host.expect("participant.returned")
    assert back["participant"]["status"] == "waiting"
    await scene.admitted(host, room)


async def test_a_refused_posture_during_the_call_suspends(scene: Scene) -> None:
    host = await scene.join_host()
    token = scene.room_token()
    room = await scene.join(token, **scene.posture_fields(scene.room, token))
    await scene.admitted(host, room)

    stolen = scene.posture_fields(scene.laptop, token)
    refused = await room.request("posture", **stolen)
    assert (refused["type"], refused["code"]) == ("error", "posture_refused")
    assert (await room.got("suspended"))["reason"] == "posture_refused"
    await host.expect("participant.suspended")


async def test_the_posture_service_suspends_a_device_at_once(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)
    hub = scene.services.hub
    assert hub is not None
    await scene.server.run(hub.suspend_device(scene.room.id, "device_revoked"))
    assert (await room.expect("suspended"))["reason"] == "device_revoked"
    told = await host.expect("participant.suspended")
    assert told["reason"] == "device_revoked"


async def test_only_devices_attest(scene: Scene) -> None:
    host: Peer = await scene.join_host()
    refused = await host.request("posture", posture_token="x")
    assert refused["code"] == "forbidden"
