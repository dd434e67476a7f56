"""End to end: aiortc participants (the clinic client SDK) in a call through the real server.

Each participant gets its join token the way it would in production (host: sign in + REST;
room endpoint: attest its posture, then REST with the posture token and proof; specialist:
redeem the invite link's token), connects with :class:`ConsultationSession`, waits to be
admitted, and sends marked synthetic video whose frame counter the others must see increase.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from clinic_client.call import LocalMedia, RecoveryPolicy, synthetic_media
from clinic_client.posture import PostureAgent
from clinic_client.session import (
    ConsultationSession,
    SessionState,
    host_join_token,
    login,
    redeem_invite,
    room_join_token,
)
from clinic_client.signalling import RequestRefused
from device_policy.facts import FactSet
from device_policy.policy import DeviceKind, Platform
from tests.server.devices.helpers import collected_facts
from tests.server.factories import PASSWORD
from tests.support.loopback import eventually, fresh_video
from tests.support.signalling_scene import Scene, SceneFactory

pytestmark = pytest.mark.slow

TAGS = {"host": 1, "room": 2, "specialist": 3}
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
QUICK = RecoveryPolicy(restart_after_s=0.5, polite_extra_s=1.0, check_interval_s=0.25)


class RecordedFacts:
    """Facts as the Linux collectors report them on a compliant room endpoint."""

    async def collect(self, *, device_id: str, device_kind: DeviceKind) -> tuple[Platform, FactSet]:
        return Platform.LINUX, collected_facts(device_id=device_id, kind=device_kind.value)


@dataclass
class Party:
    role: str
    session: ConsultationSession
    media: LocalMedia

    @property
    def id(self) -> str:
        return self.session.client.participant_id


class Call:
    """The parties of one consultation, closed at the end of the test."""

    def __init__(self, scene: Scene, server_url: str | None = None) -> None:
        self.scene = scene
        self.server_url = server_url or scene.server.base_url
        self.parties: list[Party] = []
        self.agents: list[PostureAgent] = []

    async def host(self, *, server_url: str | None = None) -> Party:
        url = server_url or self.server_url
        access = await login(url, "doctor", PASSWORD)
        ticket = await host_join_token(url, access, self.scene.consultation_id)
        return await self._join("host", url, ticket.token)

    async def room(self, *, server_url: str | None = None, **options: object) -> Party:
        url = server_url or self.server_url
        agent = PostureAgent(
            server_url=url,
            device_id=self.scene.room.id,
            private_key=self.scene.room.key,
            source=RecordedFacts(),
        )
        self.agents.append(agent)
        ticket = await room_join_token(url, agent)
        return await self._join("room", url, ticket.token, posture=agent, **options)

    async def specialist(self) -> Party:
        access = await login(self.server_url, "doctor", PASSWORD)
        async with httpx.AsyncClient() as http:
            resp = await http.post(
                f"{self.server_url}/api/v1/consultations/{self.scene.consultation_id}/invites",
                headers={"Authorization": f"Bearer {access}"},
                json={"name": "Dr Specialist"},
            )
        assert resp.status_code == 201, resp.text
        invite_token = resp.json()["link"].split("#", 1)[1]
        ticket = await redeem_invite(self.server_url, invite_token)
        return await self._join("specialist", self.server_url, ticket.token)

    async def _join(self, role: str, url: str, token: str, **options: object) -> Party:
        media = synthetic_media(source_tag=TAGS[role])
        session = await ConsultationSession.join(url, token, media=media, recovery=QUICK, **options)  # type: ignore[arg-type]
        party = Party(role=role, session=session, media=media)
        self.parties.append(party)
        return party

    async def admit(self, host: Party, *others: Party) -> None:
        for other in others:
            await host.session.wait_until(lambda s, pid=other.id: _waiting(s, pid))
            await host.session.admit(other.id)
            await other.session.wait_admitted()

    async def close(self) -> None:
        for party in self.parties:
            await party.session.close()
            party.media.stop()
        for agent in self.agents:
            await agent.aclose()


def _waiting(state: SessionState, participant_id: str) -> bool:
    return any(p.id == participant_id and p.status == "waiting" for p in state.others)


async def media_flows(parties: list[Party], timeout: float = 20.0) -> None:
    """Every party sees fresh video from every other (the marker counter increases)."""
    for party in parties:
        await party.session.wait_until(lambda s: s.media_connected, timeout)
    for receiver in parties:
        for sender in parties:
            if sender is not receiver:
                assert receiver.session.call is not None
                await fresh_video(receiver.session.call, sender.id, tag=TAGS[sender.role], timeout=timeout)


@pytest.fixture
async def call(scene_for_call: Scene) -> AsyncIterator[Call]:
    c = Call(scene_for_call)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def scene_for_call(make_scene: SceneFactory) -> Scene:
    return make_scene()


async def test_two_parties_through_the_server_send_media_both_ways(call: Call) -> None:
    host = await call.host()
    room = await call.room()
    assert room.session.state.status == "waiting"
    await call.admit(host, room)
    await media_flows([host, room])
    stats = (await host.session.stats())[room.id]
    assert stats.video_frames_received > 0 and stats.bitrate_in_kbps is not None


async def test_three_parties_each_receive_the_others_media(call: Call) -> None:
    host = await call.host()
    room = await call.room()
    specialist = await call.specialist()
    await call.admit(host, room, specialist)
    await media_flows([host, room, specialist])


async def test_resume_after_the_socket_is_cut_mid_call(call: Call) -> None:
    host = await call.host()
    room = await call.room(renegotiate_on_resume="all")
    await call.admit(host, room)
    await media_flows([host, room])
    room_call = room.session.call
    assert room_call is not None
    peer = room_call.peer(host.id)
    assert peer is not None
    before = peer.connection_id

    room.session.client.drop_socket()
    state = await room.session.wait_until(lambda s: s.reconnects == 1 and s.status == "admitted")
    assert state.status == "admitted"
    # A fresh peer connection was negotiated through the resumed socket, and media flows on it.
    await room.session.wait_until(
        lambda s: (
            (p := room_call.peer(host.id)) is not None and p.connection_id != before and s.media_connected
        )
    )
    await media_flows([host, room])


async def _send_raw(party: Party, frame: str) -> None:
    """A frame the SDK would never send, on the party's own socket (the one carrying its call)."""
    ws = party.session.client._ws
    assert ws is not None
    await ws.send(frame)


def _connection_ids(a: Party, b: Party) -> tuple[str, str]:
    """The peer connection each side has with the other (a new one would mean the call broke)."""
    ids = []
    for me, other in ((a, b), (b, a)):
        assert me.session.call is not None
        peer = me.session.call.peer(other.id)
        assert peer is not None
        ids.append(peer.connection_id)
    return ids[0], ids[1]


async def _refused(party: Party, kind: str, **fields: object) -> str:
    """Send a control-shaped message with an id; the code of the error that refers to it."""
    with pytest.raises(RequestRefused) as refused:
        await party.session.client.request(kind, timeout=10, **fields)
    return refused.value.code


async def test_bad_messages_each_get_their_error_and_the_call_in_progress_is_unaffected(call: Call) -> None:
    host = await call.host()
    room = await call.room()
    await call.admit(host, room)
    await media_flows([host, room])
    connections = _connection_ids(host, room)
    specialist = await call.specialist()  # waiting: nobody admitted it
    # Another consultation, in progress at the same time with its own admitted participant.
    other_id = call.scene.book(host_user_id=call.scene.other_host_user_id)
    other_host = await call.scene.join_host(other_id)
    stranger = await call.scene.join_specialist(other_id)
    await call.scene.admitted(other_host, stranger)

    # Malformed and oversize: no id to refer to, the error comes anyway.
    client = room.session.client
    await _send_raw(room, "{not json")
    await eventually(
        lambda: client.last_error is not None and client.last_error.data["code"] == "bad_json",
        timeout=10,
        message="no bad_json error",
    )
    big = {"v": 1, "type": "offer", "to": host.id, "sdp": "a" * 70_000, "connection_id": "conn-big-01"}
    await _send_raw(room, json.dumps(big))
    await eventually(
        lambda: client.last_error is not None and client.last_error.data["code"] == "message_too_large",
        timeout=10,
        message="no message_too_large error",
    )
    assert await _refused(room, "offer", to=host.id, sdp=SDP, connection_id="bad id!") == "invalid_message"

    # Out of order: a second hello, host commands from the room, signalling before admission,
    # admitting someone already admitted, going live before identity and consent.
    assert await _refused(room, "hello", join_token="x") == "already_joined"
    assert await _refused(room, "admit", participant=specialist.id) == "not_host"
    assert await _refused(room, "offer", to=specialist.id, sdp=SDP, connection_id="conn-ooo-01") == (
        "not_admitted"
    )
    assert await _refused(specialist, "offer", to=host.id, sdp=SDP, connection_id="conn-ooo-02") == (
        "not_admitted"
    )
    assert await _refused(host, "admit", participant=room.id) == "invalid_state"
    assert await _refused(host, "start") == "invalid_state"

    # Across consultations, both ways.
    assert await _refused(room, "offer", to=stranger.id, sdp=SDP, connection_id="conn-xc-01") == (
        "unknown_participant"
    )
    refused = await stranger.request("offer", to=room.id, sdp=SDP, connection_id="conn-xc-02")
    assert (refused["type"], refused["code"]) == ("error", "unknown_participant")

    # The call went on: same sockets, same peer connections, live video both ways.
    await media_flows([host, room])
    for party in (host, room):
        assert party.session.client.state == "open" and party.session.client.reconnects == 0
        assert party.session.state.status == "admitted"
    assert _connection_ids(host, room) == connections
    # And so did the other consultation.
    await other_host.send(type="offer", to=stranger.id, sdp=SDP, connection_id="conn-xc-03")
    assert (await stranger.expect("offer"))["connection_id"] == "conn-xc-03"


async def test_a_second_socket_replaces_the_first_mid_call_and_media_follows_it(call: Call) -> None:
    host = await call.host()
    first = await call.room()
    await call.admit(host, first)
    await media_flows([host, first])
    host_call = host.session.call
    assert host_call is not None
    old_peer = host_call.peer(first.id)
    assert old_peer is not None

    # The room endpoint restarts: a new process, a new join token, no resume token.
    second = await call.room()
    assert second.id == first.id
    assert second.session.state.status == "waiting"
    await first.session.wait_until(lambda s: s.status == "closed")
    assert first.session.client.close_code == 4409
    first.media.stop()  # from here on, any video tagged "room" can only come from the second
    # The host hangs up on the old socket's media and admits the newcomer like anyone waiting.
    await call.admit(host, second)
    await media_flows([host, second])
    new_peer = host_call.peer(second.id)
    assert new_peer is not None and new_peer.connection_id != old_peer.connection_id
