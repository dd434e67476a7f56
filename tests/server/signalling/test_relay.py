"""Offer/answer/ICE go only between admitted participants of the same consultation."""

from __future__ import annotations

import httpx

from tests.support.signalling_scene import Peer, Scene

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def in_call(scene: Scene) -> tuple[Peer, Peer]:
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)
    return host, room


async def test_offer_answer_and_trickled_ice_reach_the_other_side_unchanged(scene: Scene) -> None:
    host, room = await in_call(scene)

    await host.send(type="offer", to=room.id, sdp=SDP, connection_id="conn-0001")
    offer = await room.expect("offer")
    # The sender's message as it was validated, with "from" added.
    assert offer == {
        "from": host.id,
        "v": 1,
        "type": "offer",
        "to": room.id,
        "sdp": SDP,
        "connection_id": "conn-0001",
    }

    await room.send(type="answer", to=host.id, sdp=SDP + "a=x\r\n", connection_id="conn-0001")
    answer = await host.expect("answer")
    assert (answer["from"], answer["sdp"]) == (room.id, SDP + "a=x\r\n")

    candidate = "candidate:1 1 udp 2122260223 10.0.0.5 54321 typ host"
    await host.send(
        type="ice", to=room.id, candidate=candidate, sdpMid="0", sdpMLineIndex=0, connection_id="conn-0001"
    )
    await host.send(type="ice", to=room.id, candidate="", sdpMid=None, sdpMLineIndex=None)
    first, last = await room.expect("ice"), await room.expect("ice")
    assert (first["candidate"], first["sdpMid"], first["sdpMLineIndex"]) == (candidate, "0", 0)
    assert first["from"] == host.id
    assert last["candidate"] == ""


async def test_renegotiation_offers_are_relayed_at_any_time(scene: Scene) -> None:
    host, room = await in_call(scene)
    for n in range(3):
        await room.send(type="offer", to=host.id, sdp=f"{SDP}a=n:{n}\r\n", connection_id="conn-0002")
    sdps = [(await host.expect("offer"))["sdp"] for _ in range(3)]
    assert sdps == [f"{SDP}a=n:{n}\r\n" for n in range(3)]


async def test_messages_across_consultations_are_refused_and_the_call_goes_on(scene: Scene) -> None:
    host, room = await in_call(scene)
    other_id = scene.book(host_user_id=scene.other_host_user_id)
    other_host = await scene.join_host(other_id)
    stranger = await scene.join_specialist(other_id)
    await other_host.request("admit", participant=stranger.id)

    refused = await other_host.request("offer", to=room.id, sdp=SDP, connection_id="conn-0003")
    assert (refused["type"], refused["code"]) == ("error", "unknown_participant")
    refused = await host.request("offer", to=stranger.id, sdp=SDP, connection_id="conn-0003")
    assert refused["code"] == "unknown_participant"

    await host.send(type="offer", to=room.id, sdp=SDP, connection_id="conn-0004")
    assert (await room.expect("offer"))["connection_id"] == "conn-0004"
    assert "offer" not in [m["type"] for m in await stranger.sync()]


async def test_sending_to_oneself_or_to_nobody_is_refused(scene: Scene) -> None:
    host, room = await in_call(scene)
    assert (await host.request("offer", to=host.id, sdp=SDP, connection_id="conn-0005"))[
        "code"
    ] == "unknown_participant"
    assert (await host.request("ice", to="room:nobody", candidate=""))["code"] == "unknown_participant"


async def test_relayed_messages_are_counted_in_the_metrics(scene: Scene) -> None:
    host, room = await in_call(scene)
    await host.send(type="offer", to=room.id, sdp=SDP, connection_id="conn-0006")
    await room.expect("offer")
    metrics = httpx.get(f"{scene.server.base_url}/metrics").text
    assert 'telemed_signalling_messages_total{outcome="relayed",type="offer"} 1.0' in metrics
    assert "telemed_signalling_connections 2.0" in metrics
