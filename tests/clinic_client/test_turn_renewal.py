"""A long consultation through real coturn: renewed TURN credentials carry recoveries past the TTL.

The server runs with a 6 s ``TELEMED_TURN_TTL`` (renewals 2 s before expiry). Host (prison
laptop) and room endpoint are relay-only, so every packet goes through coturn, and a
recovery — a fresh peer connection, aiortc having no ICE restart — needs a new allocation,
which coturn grants only for credentials that have not expired.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clinic_client.call import Call as MediaCall
from clinic_client.call import IceConfig
from clinic_client.signalling import SignallingClient
from tests.support.coturn import CoturnServer, running_coturn
from tests.support.loopback import eventually
from tests.support.signalling_scene import Scene, SceneFactory

from .test_call_e2e import Call, Party, media_flows
from .test_signalling_client import next_of

pytestmark = pytest.mark.slow

TTL = timedelta(seconds=6)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    with running_coturn(Path(tmp_path_factory.mktemp("coturn"))) as server:
        yield server


def expiry(ice: IceConfig) -> int:
    """The expiry coturn reads from the (single) TURN username."""
    username = ice.servers[0].username
    assert username is not None
    return int(username.split(":", 1)[0])


def media(party: Party) -> MediaCall:
    assert party.session.call is not None
    return party.session.call


async def test_the_client_keeps_the_latest_credentials(make_scene: SceneFactory) -> None:
    scene: Scene = make_scene(
        turn_urls=["turn:127.0.0.1:3478?transport=udp"], turn_secret="x" * 40, turn_ttl=TTL
    )
    client = SignallingClient(scene.server.ws_url, scene.host_token())
    try:
        welcome = await client.connect()
        assert client.ice == welcome.ice and welcome.ice_expires_at is not None
        assert expiry(welcome.ice) == int(welcome.ice_expires_at.timestamp())

        event = await next_of(client, "ice_servers")
        assert event.ice is not None and event.expires_at is not None
        assert datetime.now(UTC) < welcome.ice_expires_at < event.expires_at
        assert (event.ice.policy, event.ice.servers[0].urls) == (
            welcome.ice.policy,
            welcome.ice.servers[0].urls,
        )
        assert expiry(event.ice) == int(event.expires_at.timestamp())
        assert client.ice == event.ice and client.ice_expires_at == event.expires_at
        # Credentials are not printed with the configuration.
        assert str(event.ice.servers[0].credential) not in repr(event.ice)
    finally:
        await client.close()


@pytest.mark.coturn
async def test_a_recovery_after_the_welcome_credentials_expired_gets_a_relay(
    make_scene: SceneFactory, coturn: CoturnServer
) -> None:
    scene = make_scene(turn_urls=[coturn.url], turn_secret=coturn.secret.decode(), turn_ttl=TTL)
    call = Call(scene)
    try:
        host = await call.host()
        room = await call.room()
        await call.admit(host, room)
        await media_flows([host, room])
        parties = (host, room)
        welcome_ice = {p.id: media(p).peer(o.id).ice for p, o in ((host, room), (room, host))}  # type: ignore[union-attr]
        first_connection = media(room).peer(host.id).connection_id  # type: ignore[union-attr]

        # Live past the welcome's credentials: coturn now refuses them for a new allocation,
        # and each client holds (and has given its call) a renewal.
        welcome_expiry = max(expiry(ice) for ice in welcome_ice.values())
        await eventually(
            lambda: (
                time.time() > welcome_expiry + 1
                and all(expiry(media(p).ice) > welcome_expiry for p in parties)
            ),
            timeout=20,
            message="no renewed credentials reached the calls",
        )
        for party in parties:
            assert media(party).ice == party.session.client.ice

        # The room's network drops its peer connection; the call recovers by itself with a
        # fresh one on each side, whose relay allocations need the renewed credentials.
        peer = media(room).peer(host.id)
        assert peer is not None
        await peer.pc.getTransceivers()[0].receiver.transport.transport.stop()

        def recovered() -> bool:
            a, b = media(room).peer(host.id), media(host).peer(room.id)
            return (
                a is not None
                and b is not None
                and a.connection_id == b.connection_id != first_connection
                and media(room).state(host.id) == media(host).state(room.id) == "connected"
            )

        await eventually(
            recovered, timeout=30, message=lambda: f"not recovered: {media(room).state(host.id)}"
        )
        await media_flows(list(parties))
        logs = coturn.logs()
        for me, other in ((host, room), (room, host)):
            new_peer = media(me).peer(other.id)
            assert new_peer is not None
            assert expiry(new_peer.ice) > welcome_expiry
            pair = new_peer.selected_pair()
            assert pair is not None and pair.local_type == "relay"
            address, port = pair.local_address
            assert address == coturn.host and coturn.min_port <= port <= coturn.max_port
            username = re.escape(str(new_peer.ice.servers[0].username))
            assert re.search(rf"user <{username}>: incoming packet ALLOCATE processed, success", logs)
    finally:
        await call.close()
