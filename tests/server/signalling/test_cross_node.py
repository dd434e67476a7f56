"""Two server nodes sharing the real Redis: any node takes any socket, admission and relay cross nodes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.support.signalling_scene import SceneFactory

pytestmark = pytest.mark.redis

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def test_host_on_one_node_admits_a_room_on_the_other_and_messages_cross(
    make_scene: SceneFactory, redis_overrides: dict[str, Any]
) -> None:
    scene = make_scene(nodes=2, **redis_overrides)
    room = await scene.join_room(node=1)
    host = await scene.join_host(node=0)
    assert [(p["id"], p["status"]) for p in host.welcome["participants"]] == [(room.id, "waiting")]
    assert (await room.expect("participant.joined"))["participant"]["id"] == host.id

    await scene.admitted(host, room)
    await host.send(type="offer", to=room.id, sdp=SDP, connection_id="conn-0001")
    offer = await room.expect("offer")
    assert (offer["from"], offer["connection_id"]) == (host.id, "conn-0001")
    await room.send(type="answer", to=host.id, sdp=SDP, connection_id="conn-0001")
    assert (await host.expect("answer"))["from"] == room.id

    # A specialist on the second node waits; the host on the first sees it and denies it.
    specialist = await scene.join_specialist(node=1)
    await host.expect("participant.joined")
    refused = await room.request("offer", to=specialist.id, sdp=SDP, connection_id="conn-0002")
    assert refused["code"] == "not_admitted"
    await host.request("deny", participant=specialist.id)
    assert await specialist.closed() == 4403


async def test_a_room_resumes_on_the_other_node_and_keeps_its_place(
    make_scene: SceneFactory, redis_overrides: dict[str, Any]
) -> None:
    scene = make_scene(nodes=2, **redis_overrides)
    host = await scene.join_host(node=0)
    token = scene.room_token()
    room = await scene.join(token, node=1, **scene.posture_fields(scene.room, token, node=1))
    await scene.admitted(host, room)

    room.ws.transport.abort()
    await host.expect("participant.disconnected")
    back = await scene.join(
        token,
        node=0,
        resume_token=room.welcome["resume_token"],
        **scene.posture_fields(scene.room, token, node=0),
    )
    assert (back.welcome["resumed"], back.welcome["status"]) == (True, "admitted")
    await host.expect("participant.resumed")
    await host.send(type="offer", to=room.id, sdp=SDP, connection_id="conn-0003")
    assert (await back.expect("offer"))["connection_id"] == "conn-0003"


async def test_a_socket_on_one_node_replaces_the_one_on_the_other(
    make_scene: SceneFactory, redis_overrides: dict[str, Any]
) -> None:
    scene = make_scene(nodes=2, **redis_overrides)
    host = await scene.join_host(node=0)
    first = await scene.join_host(node=1)
    assert first.welcome["status"] == "admitted"
    await host.expect("replaced")
    assert await host.closed() == 4409


async def test_when_a_node_goes_away_its_participants_time_out_on_the_other(
    make_scene: SceneFactory, redis_overrides: dict[str, Any]
) -> None:
    scene = make_scene(nodes=2, signalling_resume_grace=timedelta(milliseconds=500), **redis_overrides)
    host = await scene.join_host(node=0)
    room = await scene.join_room(node=1)
    await scene.admitted(host, room)

    scene.nodes[1].stop()
    await host.expect("participant.disconnected")
    left = await host.expect("participant.left")
    assert (left["participant"]["id"], left["reason"]) == (room.id, "timeout")


async def test_readiness_checks_redis(make_scene: SceneFactory, redis_overrides: dict[str, Any]) -> None:
    scene = make_scene(**redis_overrides)
    ready = httpx.get(f"{scene.server.base_url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == "ok"
