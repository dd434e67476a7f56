"""coturn goes down mid-call and comes back on the same port: both relay-only sides say why media
stopped (``relay_unavailable``), and the call recovers by itself when the relay is back.

The host (clinician) and the room endpoint are both relay-only, as the policy wants for
endpoints inside a prison, so every media packet goes through the real coturn this test
starts, stops and starts again (same port, same secret). Nobody re-joins: the signalling
sockets stay, and the SDK's recovery negotiates fresh peer connections through the new
allocations.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinic_client.call import CallError, RelayUnavailable
from tests.clinic_client.test_call_e2e import Call, Party, media_flows
from tests.support.coturn import CoturnServer, running_coturn, stop_coturn, stun_binding_ok
from tests.support.signalling_scene import SceneFactory

pytestmark = [pytest.mark.slow, pytest.mark.coturn]


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[CoturnServer]:
    with running_coturn(tmp_path / "coturn") as server:
        yield server


def restart_coturn(server: CoturnServer, timeout: float = 10.0) -> None:
    """Start coturn again exactly as before (same port, relay range and secret); wait for STUN."""
    args = server.process.args
    assert isinstance(args, list)
    server.process = subprocess.Popen(  # noqa: S603 - the argv start_coturn built
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=server.workdir,
    )
    deadline = time.monotonic() + timeout
    while not stun_binding_ok(server.host, server.port):
        assert server.running(), f"coturn did not restart; log:\n{server.logs()[-2000:]}"
        assert time.monotonic() < deadline, "coturn did not answer STUN after the restart"
        time.sleep(0.1)


async def media_error(me: Party, other: Party, timeout: float = 30.0) -> CallError:
    """Wait until ``me`` has an error for its media with ``other``; return it."""
    call = me.session.call
    assert call is not None
    await me.session.wait_until(lambda s: call.error(other.id) is not None, timeout)
    error = call.error(other.id)
    assert error is not None
    return error


async def test_the_relay_going_away_is_reported_and_the_call_heals_when_it_is_back(
    make_scene: SceneFactory, coturn: CoturnServer
) -> None:
    scene = make_scene(turn_urls=[coturn.url], turn_secret=coturn.secret.decode())
    call = Call(scene)
    try:
        host = await call.host()
        room = await call.room()
        pairs = ((host, room), (room, host))
        for me, _ in pairs:
            welcome = me.session.client.welcome
            assert welcome is not None and welcome.ice.policy == "relay"
        await call.admit(host, room)
        await media_flows([host, room])
        before = {}
        for me, other in pairs:
            assert me.session.call is not None and me.session.call.error(other.id) is None
            peer = me.session.call.peer(other.id)
            assert peer is not None
            before[me.id] = peer.connection_id

        stop_coturn(coturn)

        # Each side's media path dies with its allocation; the fresh peer connection it tries
        # gathers no relay candidate, and says so — the clinician's side as well as the room's.
        for me, other in pairs:
            error = await media_error(me, other)
            assert isinstance(error, RelayUnavailable)
            assert (error.code, error.status) == ("relay_unavailable", 503)
            assert "TURN unreachable" in str(error)
            assert me.session.state.media[other.id] != "connected"
        # Nobody was sent away: the consultation carries on, only the media waits.
        assert host.session.state.status == room.session.state.status == "admitted"

        restart_coturn(coturn)

        # Recovery retries by itself; the next fresh peer connection gets a relay again.
        await media_flows([host, room], timeout=45)
        for me, other in pairs:
            assert me.session.call is not None and me.session.call.error(other.id) is None
            peer = me.session.call.peer(other.id)
            assert peer is not None and peer.connection_id != before[me.id]
            pair = peer.selected_pair()
            assert pair is not None and pair.local_type == "relay"
            assert pair.local_address[0] == coturn.host
            assert coturn.min_port <= pair.local_address[1] <= coturn.max_port
        # Same sockets throughout: nobody re-joined or reconnected.
        assert host.session.state.reconnects == room.session.state.reconnects == 0
        assert host.session.state.status == room.session.state.status == "admitted"
    finally:
        await call.close()
