"""Relay-only calls through a real coturn, with credentials minted by server.turn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clinic_client.call import Call, IceConfig, IcePolicy, RecoveryPolicy
from clinic_client.call.ice import candidate_type
from server.turn import turn_credentials
from tests.support.coturn import CoturnServer, running_coturn
from tests.support.loopback import CallHarness, connected_pair, eventually, fresh_video

pytestmark = [pytest.mark.slow, pytest.mark.coturn]

NO_RECOVERY = RecoveryPolicy(enabled=False, check_interval_s=0.25)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    with running_coturn(Path(tmp_path_factory.mktemp("coturn"))) as server:
        yield server


@pytest.fixture
async def harness(coturn: CoturnServer) -> AsyncIterator[CallHarness]:
    h = CallHarness()
    try:
        yield h
    finally:
        await h.close()
    assert h.network.errors == [], f"handle_remote raised: {h.network.errors!r}"


def ice_for(
    coturn: CoturnServer,
    participant_id: str,
    *,
    policy: IcePolicy = "relay",
    secret: bytes | None = None,
    issued: datetime | None = None,
) -> IceConfig:
    """What the server would hand this participant: fresh TURN credentials + its policy."""
    creds = turn_credentials(
        secret=coturn.secret if secret is None else secret,
        participant_id=participant_id,
        ttl=timedelta(minutes=10),
        now=issued or datetime.now(UTC),
        urls=[coturn.url],
    )
    return IceConfig.from_turn_credentials(creds.as_ice_server(), policy=policy)


def sent_candidate_types(harness: CallHarness, sender: str) -> list[str]:
    """Types of every candidate a participant put on the wire (offers and answers)."""
    types: list[str] = []
    for delivery in harness.network.log:
        if delivery.sender == sender and delivery.kind in ("offer", "answer"):
            sdp = str(delivery.payload["sdp"])
            types += [
                candidate_type(line) or "?" for line in sdp.splitlines() if line.startswith("a=candidate:")
            ]
    return types


def assert_relayed_by(call: Call, remote_id: str, coturn: CoturnServer) -> None:
    peer = call.peer(remote_id)
    assert peer is not None
    pair = peer.selected_pair()
    assert pair is not None, f"{call.participant_id}: no nominated candidate pair"
    assert pair.local_type == "relay", f"{call.participant_id} uses a {pair.local_type} path"
    host, port = pair.local_address
    # The relayed address is one coturn allocated: the media really goes through it.
    assert host == coturn.host
    assert coturn.min_port <= port <= coturn.max_port


async def test_relay_only_endpoints_send_all_media_through_turn(
    harness: CallHarness, coturn: CoturnServer
) -> None:
    laptop = harness.call("a-laptop", source_tag=1, ice=ice_for(coturn, "a-laptop"))
    room = harness.call("b-room", source_tag=2, ice=ice_for(coturn, "b-room"))

    await connected_pair(laptop, room)
    await fresh_video(laptop, "b-room", tag=2)
    await fresh_video(room, "a-laptop", tag=1)

    # Neither endpoint ever revealed a host or server-reflexive address.
    assert set(sent_candidate_types(harness, "a-laptop")) == {"relay"}
    assert set(sent_candidate_types(harness, "b-room")) == {"relay"}
    assert_relayed_by(laptop, "b-room", coturn)
    assert_relayed_by(room, "a-laptop", coturn)
    stats = (await room.stats())["a-laptop"]
    assert (stats.local_candidate_type, stats.remote_candidate_type) == ("relay", "relay")
    logs = coturn.logs()
    for pid in ("a-laptop", "b-room"):
        assert f":{pid}>: incoming packet ALLOCATE processed, success" in logs
        assert f":{pid}>: incoming packet CHANNEL_BIND processed, success" in logs


async def test_relay_only_room_can_call_a_specialist_who_may_connect_directly(
    harness: CallHarness, coturn: CoturnServer
) -> None:
    room = harness.call("a-room", source_tag=1, ice=ice_for(coturn, "a-room"))
    specialist = harness.call("b-specialist", source_tag=2, ice=ice_for(coturn, "b-specialist", policy="all"))

    await connected_pair(room, specialist)
    await fresh_video(room, "b-specialist", tag=2)
    await fresh_video(specialist, "a-room", tag=1)

    assert set(sent_candidate_types(harness, "a-room")) == {"relay"}
    assert "host" in sent_candidate_types(harness, "b-specialist")
    assert_relayed_by(room, "b-specialist", coturn)


@pytest.mark.parametrize("case", ["wrong_secret", "expired"])
async def test_bad_turn_credentials_mean_no_connection_at_all(
    harness: CallHarness, coturn: CoturnServer, case: str
) -> None:
    def bad_ice(pid: str) -> IceConfig:
        if case == "wrong_secret":
            return ice_for(coturn, pid, secret=b"not-the-secret")
        # Issued two hours ago with a ten minute TTL: expired long before now.
        return ice_for(coturn, pid, issued=datetime.now(UTC) - timedelta(hours=2))

    laptop_ice = bad_ice("a-laptop")
    laptop = harness.call("a-laptop", ice=laptop_ice, recovery=NO_RECOVERY)
    room = harness.call("b-room", ice=bad_ice("b-room"), recovery=NO_RECOVERY)

    await laptop.connect_to("b-room")
    await room.connect_to("a-laptop")

    assert await laptop.wait_for_state("b-room", "failed", timeout=10) == "failed"
    stats = (await laptop.stats())["b-room"]
    assert stats.state == "failed"
    assert stats.local_candidate_type is None
    # The room never got an offer it could use, and no media moved either way.
    assert room.state("a-laptop") != "connected"
    assert laptop.received_frames("b-room").video == 0
    assert room.received_frames("a-laptop").video == 0
    assert harness.network.sent("offer") == []
    username = laptop_ice.servers[0].username
    await eventually(
        lambda: f"<{username}>: incoming packet message processed, error 401" in coturn.logs(),
        timeout=5,
        message="coturn did not log the refused allocation",
    )
