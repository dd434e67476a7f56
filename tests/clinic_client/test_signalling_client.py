"""The signalling client SDK against the real server: join, refusals, requests, resume, posture."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from jose import jwt as jose_jwt

from clinic_client.signalling import JoinRefused, RequestRefused, ServerEvent, SignallingClient
from device_policy.proof import sign_request_proof
from tests.support.signalling_scene import Enrolled, Scene, SceneFactory

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@dataclass
class Issued:
    token: str
    jti: str
    expires_at: datetime


class ScenePosture:
    """A posture source issuing short-lived tokens, the way the attestation endpoint would."""

    def __init__(self, scene: Scene, device: Enrolled, ttl: timedelta) -> None:
        self.scene = scene
        self.device = device
        self.ttl = ttl
        self.current: Issued | None = None
        self.attested = 0

    async def attest(self) -> Issued:
        token = self.scene.posture_token(self.device, self.ttl)
        claims = jose_jwt.get_unverified_claims(token)
        self.current = Issued(token, claims["jti"], datetime.fromtimestamp(claims["exp"], UTC))
        self.attested += 1
        return self.current

    def proof(self, method: str, url: str, *, nonce: str | None = None, token: Issued | None = None) -> str:
        issued = token or self.current
        assert issued is not None and nonce is not None
        return sign_request_proof(
            self.device.key, method=method, url=url, token_jti=issued.jti, iat=datetime.now(UTC), nonce=nonce
        )


async def next_of(client: SignallingClient, kind: str, timeout: float = 10.0) -> ServerEvent:
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if event.type == kind:
                return event


async def test_a_bad_join_token_is_refused_with_its_code(scene: Scene) -> None:
    client = SignallingClient(scene.server.ws_url, scene.host_token() + "x")
    with pytest.raises(JoinRefused) as refused:
        await client.connect()
    assert (refused.value.code, refused.value.close_code) == ("unauthenticated", 4401)


async def test_host_admits_and_requests_refused_by_the_server_raise(scene: Scene) -> None:
    host = SignallingClient(scene.server.ws_url, scene.host_token())
    room_posture = ScenePosture(scene, scene.room, timedelta(minutes=5))
    room = SignallingClient(scene.server.ws_url, scene.room_token(), posture=room_posture)
    try:
        assert (await host.connect()).status == "admitted"
        welcome = await room.connect()
        assert (welcome.status, welcome.posture_expires_at is not None) == ("waiting", True)
        joined = await next_of(host, "participant.joined")
        assert joined.participant is not None and joined.participant.id == welcome.participant_id

        with pytest.raises(RequestRefused) as refused:
            await room.admit(host.participant_id)
        assert refused.value.code == "not_host"

        await host.admit(room.participant_id)
        admitted = await next_of(room, "admitted")
        assert [p.id for p in admitted.participants] == [host.participant_id]
    finally:
        await host.close()
        await room.close()


async def test_the_call_payloads_travel_as_protocol_messages(scene: Scene) -> None:
    host = SignallingClient(scene.server.ws_url, scene.host_token())
    await host.connect()
    room = await scene.join_room()
    await host.admit(room.id)
    try:
        await host.send(room.id, "offer", {"type": "offer", "sdp": SDP, "connection_id": "conn-0001"})
        await host.send(
            room.id,
            "ice",
            {
                "candidate": "candidate:1 1 udp 1 10.0.0.5 5 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
                "connection_id": "conn-0001",
            },
        )
        offer, ice = await room.expect("offer"), await room.expect("ice")
        assert (offer["from"], offer["sdp"], offer["connection_id"]) == (
            host.participant_id,
            SDP,
            "conn-0001",
        )
        assert (ice["sdpMid"], ice["sdpMLineIndex"], ice["connection_id"]) == ("0", 0, "conn-0001")

        await room.send(type="answer", to=host.participant_id, sdp=SDP, connection_id="conn-0001")
        answer = await next_of(host, "answer")
        assert answer.sender == room.id and answer.data["connection_id"] == "conn-0001"
    finally:
        await host.close()


async def test_a_dropped_socket_comes_back_with_its_place(scene: Scene) -> None:
    host = await scene.join_host()
    posture = ScenePosture(scene, scene.room, timedelta(minutes=5))
    room = SignallingClient(scene.server.ws_url, scene.room_token(), posture=posture)
    try:
        await room.connect()
        await host.request("admit", participant=room.participant_id)
        await next_of(room, "admitted")
        room.drop_socket()
        await next_of(room, "reconnecting")
        back = await next_of(room, "reconnected")
        assert back.welcome is not None and (back.welcome.resumed, back.welcome.status) == (True, "admitted")
        await host.expect("participant.resumed")
        await host.send(type="offer", to=room.participant_id, sdp=SDP, connection_id="conn-0002")
        assert (await next_of(room, "offer")).data["connection_id"] == "conn-0002"
    finally:
        await room.close()


async def test_the_client_renews_its_posture_before_it_lapses(make_scene: SceneFactory) -> None:
    scene = make_scene()
    host = await scene.join_host()
    posture = ScenePosture(scene, scene.room, timedelta(seconds=3))
    room = SignallingClient(
        scene.server.ws_url, scene.room_token(), posture=posture, posture_margin=timedelta(seconds=1)
    )
    try:
        await room.connect()
        await host.request("admit", participant=room.participant_id)
        await next_of(room, "admitted")
        async with asyncio.timeout(20):
            while posture.attested < 4:  # the join's, then three renewals
                await asyncio.sleep(0.1)
        seen = await host.sync()
        assert "participant.suspended" not in [m["type"] for m in host.seen + seen]
        await host.send(type="offer", to=room.participant_id, sdp=SDP, connection_id="conn-0003")
        assert (await next_of(room, "offer")).data["connection_id"] == "conn-0003"
    finally:
        await room.close()
