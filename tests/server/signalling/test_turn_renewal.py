"""TURN credentials outlive no call: the hub renews them before they expire, for the admitted.

The server runs with a 6 s ``TELEMED_TURN_TTL``, so a renewal is due 2 s before expiry (a
third of a short TTL; five minutes before, for the default hour). Each credential is
checked the way coturn checks it: the username's expiry and the HMAC of the shared secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import pytest

from server.signalling.protocol import IceServers
from server.turn import turn_password
from tests.support.signalling_scene import Peer, Scene, SceneFactory

pytestmark = pytest.mark.slow  # each test lives through a TTL or two

TURN_URL = "turn:127.0.0.1:3478?transport=udp"
TURN_SECRET = "turn-secret-for-the-renewal-tests-0123456789"
TTL = timedelta(seconds=6)


@pytest.fixture
def turn_scene(make_scene: SceneFactory) -> Scene:
    return make_scene(turn_urls=[TURN_URL], turn_secret=TURN_SECRET, turn_ttl=TTL)


def valid_credentials(message: dict[str, Any], expires_at: int) -> tuple[str, str]:
    """The one ICE server in a welcome or ice_servers message, checked as coturn would."""
    (server,) = message["ice_servers"]
    assert server["urls"] == [TURN_URL]
    expiry, user = server["username"].split(":", 1)
    assert int(expiry) == expires_at
    assert server["credential"] == turn_password(secret=TURN_SECRET.encode(), username=server["username"])
    return server["username"], server["credential"]


async def renewal(peer: Peer, timeout: float = 10.0) -> tuple[dict[str, Any], float]:
    """The next ``ice_servers`` message (validated by the protocol's model) and when it arrived."""
    message = await peer.expect("ice_servers", timeout)
    IceServers.model_validate(message)
    return message, time.time()


async def in_call(scene: Scene) -> tuple[Peer, Peer, str]:
    host = await scene.join_host()
    token = scene.room_token()
    room = await scene.join(token, **scene.posture_fields(scene.room, token))
    await scene.admitted(host, room)
    return host, room, token


async def test_admitted_participants_get_fresh_credentials_before_theirs_expire(
    turn_scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="telemed.signalling")
    host, room, _ = await in_call(turn_scene)
    secrets_seen: set[str] = set()

    async def follow(peer: Peer) -> None:
        welcome = peer.welcome
        assert welcome["ice_policy"] == "relay"
        secrets_seen.update(valid_credentials(welcome, welcome["ice_expires_at"]))
        # Renewed while the welcome's are still good, with a later expiry...
        first, arrived = await renewal(peer)
        assert arrived < welcome["ice_expires_at"]
        assert first["expires_at"] > welcome["ice_expires_at"]
        assert first["ice_policy"] == "relay"
        secrets_seen.update(valid_credentials(first, first["expires_at"]))
        # ...and again, for as long as the call lasts.
        second, arrived = await renewal(peer)
        assert arrived < first["expires_at"] < second["expires_at"]
        secrets_seen.update(valid_credentials(second, second["expires_at"]))

    await asyncio.gather(follow(host), follow(room))

    # Renewals were logged (participant and expiry), credentials never.
    renewed = [r for r in caplog.records if r.getMessage() == "TURN credentials renewed"]
    assert {getattr(r, "participant", None) for r in renewed} >= {host.id, room.id}
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert not any(secret in text for secret in secrets_seen), record.getMessage()


async def test_a_waiting_participant_gets_fresh_credentials_with_its_admission(turn_scene: Scene) -> None:
    host = await turn_scene.join_host()
    token = turn_scene.room_token()
    room = await turn_scene.join(token, **turn_scene.posture_fields(turn_scene.room, token))
    expired_at = room.welcome["ice_expires_at"]
    valid_credentials(room.welcome, expired_at)

    # Waiting past the expiry of its welcome's credentials: nothing is renewed in the waiting room.
    while time.time() <= expired_at:
        await asyncio.sleep(0.2)
    assert "ice_servers" not in [m["type"] for m in await room.sync()]

    # Admitted: fresh credentials come first, so the peer connections it opens can allocate.
    assert (await host.request("admit", participant=room.id))["type"] == "ack"
    await room.expect("admitted")
    assert room.types()[-2:] == ["ice_servers", "admitted"]
    fresh = room.seen[-2]
    assert fresh["expires_at"] > time.time()
    valid_credentials(fresh, fresh["expires_at"])

    # From now on it is renewed like everyone in the call.
    following, _ = await renewal(room)
    assert following["expires_at"] > fresh["expires_at"]


async def test_a_participant_sent_back_to_waiting_is_no_longer_renewed(turn_scene: Scene) -> None:
    host, room, _ = await in_call(turn_scene)
    assert (await host.request("return_to_waiting", participant=room.id))["type"] == "ack"
    await room.expect("returned")
    expired_at = room.welcome["ice_expires_at"]
    while time.time() <= expired_at + 1:
        await asyncio.sleep(0.2)
    assert "ice_servers" not in [m["type"] for m in await room.sync()]
    # The host, still in the call, is.
    await host.sync()
    assert "ice_servers" in host.types()


async def test_a_suspended_device_gets_no_credentials_until_it_is_admitted_again(turn_scene: Scene) -> None:
    host = await turn_scene.join_host()
    token = turn_scene.room_token()
    short_posture = turn_scene.posture_fields(turn_scene.room, token, ttl=timedelta(seconds=2))
    room = await turn_scene.join(token, **short_posture)
    await turn_scene.admitted(host, room)
    assert (await room.expect("suspended"))["reason"] == "posture_expired"
    while time.time() <= room.welcome["ice_expires_at"]:
        await asyncio.sleep(0.2)
    assert "ice_servers" not in room.types() + [m["type"] for m in await room.sync()]

    # A fresh posture brings it back to the waiting room (still nothing), the host admits it.
    accepted = await room.request("posture", **turn_scene.posture_fields(turn_scene.room, token))
    assert accepted["type"] == "posture.accepted"
    await room.expect("returned")
    assert "ice_servers" not in room.types()
    await turn_scene.admitted(host, room)
    assert room.types()[-2:] == ["ice_servers", "admitted"]


async def test_a_resumed_socket_gets_fresh_credentials_and_its_renewals(turn_scene: Scene) -> None:
    host, room, token = await in_call(turn_scene)
    first = room.welcome
    while time.time() <= first["ice_expires_at"]:
        await asyncio.sleep(0.2)

    room.ws.transport.abort()
    await host.expect("participant.disconnected")
    back = await turn_scene.join(
        token, resume_token=first["resume_token"], **turn_scene.posture_fields(turn_scene.room, token)
    )
    assert (back.welcome["resumed"], back.welcome["status"]) == (True, "admitted")
    assert back.welcome["ice_expires_at"] > time.time()
    valid_credentials(back.welcome, back.welcome["ice_expires_at"])

    renewed, arrived = await renewal(back)
    assert arrived < back.welcome["ice_expires_at"] < renewed["expires_at"]


@pytest.mark.redis
async def test_admitted_on_another_node_a_waiting_room_gets_fresh_credentials_first(
    make_scene: SceneFactory, redis_overrides: dict[str, Any]
) -> None:
    scene = make_scene(
        nodes=2, turn_urls=[TURN_URL], turn_secret=TURN_SECRET, turn_ttl=TTL, **redis_overrides
    )
    room = await scene.join_room(node=1)
    host = await scene.join_host(node=0)
    while time.time() <= room.welcome["ice_expires_at"]:
        await asyncio.sleep(0.2)
    assert "ice_servers" not in [m["type"] for m in await room.sync()]

    await scene.admitted(host, room)
    assert room.types()[-2:] == ["ice_servers", "admitted"]
    fresh = room.seen[-2]
    assert fresh["expires_at"] > time.time()
    valid_credentials(fresh, fresh["expires_at"])


async def test_without_turn_there_is_nothing_to_renew(scene: Scene) -> None:
    host = await scene.join_host()
    assert (host.welcome["ice_servers"], host.welcome["ice_expires_at"]) == ([], None)
