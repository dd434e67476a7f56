"""A server process dies mid-call, Redis restarts empty, a node vanishes: the call carries on.

Every test runs real ``telemed serve`` processes on a fresh PostgreSQL database and a private
redis-server (tests/faults/conftest.py): the shared Redis and PostgreSQL are never touched.
Faults are SIGKILL — no graceful shutdown, nobody is told.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from jose import jwt as jose_jwt

from clinic_client.signalling import SignallingClient
from device_policy.proof import sign_request_proof
from records.audit.log import iter_entries
from server.db import session_scope, utcnow
from tests.clinic_client.test_call_e2e import TAGS, Call, Party, media_flows
from tests.support.loopback import fresh_video
from tests.support.signalling_scene import Peer, Scene

from .conftest import Cluster, ClusterFactory

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

WAIT_S = 30.0
ICE = "candidate:1 1 udp 2122260223 192.0.2.10 50000 typ host"


# --- helpers --------------------------------------------------------------------------------


def signalling_entries(scene: Scene, participant_id: str) -> list[tuple[str, dict[str, Any]]]:
    """``(action, detail)`` of the ``signalling.*`` audit entries about one participant, in order."""
    with session_scope(scene.services.engine) as session:
        entries = [
            (e.action, e.actor_id, _detail(e.detail))
            for e in iter_entries(session=session)
            if e.action.startswith("signalling.") and e.consultation_id == scene.consultation_id
        ]
    return [
        (action, detail)
        for action, actor, detail in entries
        if actor == participant_id or detail.get("participant") == participant_id
    ]


def _detail(detail: str | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(detail, str):
        parsed: dict[str, Any] = json.loads(detail)
        return parsed
    return dict(detail or {})


def frames(receiver: Party, sender: Party) -> int:
    """Video frames ``receiver`` has decoded from ``sender`` so far."""
    call = receiver.session.call
    assert call is not None
    return call.received_frames(sender.id).video


def laptop_headers(cluster: Cluster, method: str, url: str, token_jti: str) -> str:
    """A request proof by the host's laptop key for ``method url``, bound to ``token_jti``."""
    return sign_request_proof(
        cluster.scene.laptop.key,
        method=method,
        url=url,
        token_jti=token_jti,
        iat=utcnow(),
        nonce=secrets.token_urlsafe(16),
    )


def request_grant(cluster: Cluster, host_access: str) -> str:
    """The host, on its enrolled laptop, gets a record grant for the live consultation (node A)."""
    scene = cluster.scene
    posture = scene.posture_token(scene.laptop)
    url = f"{cluster.nodes[0].base_url}/api/v1/records/grants"
    resp = httpx.post(
        url,
        json={"consultation_id": scene.consultation_id},
        headers={
            "Authorization": f"Bearer {host_access}",
            "X-Posture-Token": posture,
            "X-Posture-Proof": laptop_headers(
                cluster, "POST", url, jose_jwt.get_unverified_claims(posture)["jti"]
            ),
        },
        timeout=10.0,
    )
    assert resp.status_code == 201, resp.text
    grant: str = resp.json()["grant"]
    return grant


def read_records(cluster: Cluster, host_access: str, grant: str) -> httpx.Response:
    """List the patient's documents under the grant (a proof by the laptop key bound to it)."""
    url = f"{cluster.nodes[0].base_url}/api/v1/records/patients/{cluster.scene.patient_id}/documents"
    return httpx.get(
        url,
        headers={
            "Authorization": f"Bearer {host_access}",
            "X-Record-Grant": grant,
            "X-Posture-Proof": laptop_headers(
                cluster, "GET", url, jose_jwt.get_unverified_claims(grant)["jti"]
            ),
        },
        timeout=10.0,
    )


def host_access_token(cluster: Cluster) -> str:
    resp = httpx.post(
        f"{cluster.nodes[0].base_url}/api/v1/auth/login",
        json={"username": "doctor", "password": cluster.admin_password},
        timeout=10.0,
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


async def readiness_becomes(cluster: Cluster, status: int, timeout: float = WAIT_S) -> list[httpx.Response]:
    """Wait until ``/readyz`` answers ``status`` on every node; the answers."""
    deadline = time.monotonic() + timeout
    while True:
        answers = [await asyncio.to_thread(cluster.readiness, n) for n in range(len(cluster.nodes))]
        if all(a.status_code == status for a in answers):
            return answers
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz did not become {status}: {[a.text[:200] for a in answers]}")
        await asyncio.sleep(0.2)


async def log_says(cluster: Cluster, node: int, text: str, timeout: float = WAIT_S) -> None:
    """Wait until a node's log holds ``text``."""
    deadline = time.monotonic() + timeout
    while text not in cluster.nodes[node].logs():
        if time.monotonic() > deadline:
            raise AssertionError(f"node {node} never logged {text!r}: {cluster.nodes[node].logs()[-2000:]}")
        await asyncio.sleep(0.1)


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait until ``predicate()``; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.05)


async def expect_about(
    peer: Peer, kind: str, participant_id: str, *, since: int, timeout: float = WAIT_S
) -> dict[str, Any]:
    """The first ``participant.*`` event of ``kind`` about ``participant_id`` from ``peer.seen[since]``
    on — already read while waiting for something else, or still to come."""
    async with asyncio.timeout(timeout):
        index = since
        while True:
            for message in peer.seen[index:]:
                if message["type"] == kind and message["participant"]["id"] == participant_id:
                    return message
            index = len(peer.seen)
            await peer.recv(timeout)


async def join_room_peer(scene: Scene, node: int) -> tuple[Peer, str]:
    """The room endpoint's raw socket on ``node`` and its join token (to resume with)."""
    token = scene.room_token()
    room = await scene.join(token, node=node, **scene.posture_fields(scene.room, token, node=node))
    return room, token


# --- 1. a server process killed mid-call ----------------------------------------------------


async def test_a_node_killed_mid_call_the_room_resumes_on_its_restart_or_elsewhere_still_admitted(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(nodes=2)
    scene = cluster.scene
    node_a, node_b = cluster.nodes
    call = Call(scene, server_url=node_a.base_url)
    try:
        host = await call.host(server_url=node_a.base_url)
        room = await call.room(server_url=node_b.base_url)
        await call.admit(host, room)
        scene.prepare_start()
        await host.session.start_consultation()
        await room.session.wait_until(lambda s: s.consultation_state == "live", WAIT_S)
        await media_flows([host, room])
        access = host_access_token(cluster)
        grant = await asyncio.to_thread(request_grant, cluster, access)
        assert (await asyncio.to_thread(read_records, cluster, access, grant)).status_code == 200
        before = {"host": frames(host, room), "room": frames(room, host)}

        node_b.kill()
        await room.session.wait_until(lambda s: s.status == "reconnecting", WAIT_S)
        await asyncio.to_thread(node_b.restart)

        # Back on the restarted process, as the same participant, in the call (not the waiting room).
        state = await room.session.wait_until(lambda s: s.reconnects == 1 and s.status == "admitted", WAIT_S)
        welcome = room.session.client.welcome
        assert welcome is not None
        assert (welcome.participant_id, welcome.resumed, welcome.status) == (room.id, True, "admitted")
        assert state.consultation_state == "live"
        assert scene.state() == "live"
        await host.session.wait_until(
            lambda s: any(p.id == room.id and p.status == "admitted" and p.connected for p in s.others),
            WAIT_S,
        )
        # Media goes on: fresh frames (the picture's counter increases) at both ends, and more of them.
        assert host.session.call is not None and room.session.call is not None
        await fresh_video(host.session.call, room.id, tag=TAGS["room"], timeout=WAIT_S)
        await fresh_video(room.session.call, host.id, tag=TAGS["host"], timeout=WAIT_S)
        assert frames(host, room) > before["host"] and frames(room, host) > before["room"]

        # Killed again, for good: the reverse proxy now sends the room to the other process
        # (here, the room is pointed at it), where it resumes just the same.
        node_b.kill()
        await room.session.wait_until(lambda s: s.status == "reconnecting", WAIT_S)
        room.session.client.url = node_a.ws_url
        state = await room.session.wait_until(lambda s: s.reconnects == 2 and s.status == "admitted", WAIT_S)
        assert (state.consultation_state, scene.state()) == ("live", "live")
        mid = {"host": frames(host, room), "room": frames(room, host)}
        await fresh_video(host.session.call, room.id, tag=TAGS["room"], timeout=WAIT_S)
        await fresh_video(room.session.call, host.id, tag=TAGS["host"], timeout=WAIT_S)
        assert frames(host, room) > mid["host"] and frames(room, host) > mid["room"]

        # The audit trail: joined waiting, admitted once, resumed admitted (twice); and it verifies.
        assert signalling_entries(scene, room.id) == [
            ("signalling.joined", {"resumed": False, "status": "waiting"}),
            ("signalling.admitted", {"participant": room.id}),
            ("signalling.joined", {"resumed": True, "status": "admitted"}),
            ("signalling.joined", {"resumed": True, "status": "admitted"}),
        ]
        verify = httpx.get(
            f"{node_a.base_url}/api/v1/audit/verify", headers=cluster.admin_headers(), timeout=30.0
        )
        assert verify.status_code == 200 and verify.json()["ok"] is True, verify.text

        # The host ends the call: the room is told, and the grant issued during it is dead.
        await host.session.end("consultation complete")
        await room.session.wait_until(lambda s: s.status == "ended", WAIT_S)
        assert scene.state() == "ended"
        refused = await asyncio.to_thread(read_records, cluster, access, grant)
        assert (refused.status_code, refused.json()["code"]) == (401, "grant_revoked")
    finally:
        await call.close()


# --- 2. Redis restarted during a two-process call -------------------------------------------


async def test_redis_restarted_mid_call_clients_are_told_to_resync_and_the_call_recovers(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(nodes=2, TELEMED_SIGNALLING_RESUME_GRACE="PT8S")
    scene = cluster.scene
    host = await scene.join_host(node=0)
    room, room_token = await join_room_peer(scene, node=1)
    await scene.admitted(host, room)
    scene.prepare_start()
    # A specialist (the SDK's signalling client) waits on the room's node.
    specialist = SignallingClient(cluster.nodes[1].ws_url, scene.specialist_token())
    try:
        mark = len(host.seen)
        specialist_id = (await specialist.connect()).participant_id
        await expect_about(host, "participant.joined", specialist_id, since=mark)
        # And another who will go away during the outage and not come back.
        mark = len(host.seen)
        gone = await scene.join_specialist(node=1)
        await expect_about(host, "participant.joined", gone.id, since=mark)
        await host.send(type="ice", to=room.id, candidate=ICE, connection_id="conn-before")
        assert (await room.expect("ice"))["connection_id"] == "conn-before"

        cluster.redis.kill()
        down = await readiness_becomes(cluster, 503)
        for answer in down:
            assert answer.json()["code"] == "service_unavailable"
            assert answer.json()["checks"]["redis"] == "down"
        # The host's commands are refused with their code and not done; the socket stays.
        refused = await host.request("return_to_waiting", participant=room.id)
        assert (refused["type"], refused["code"]) == ("error", "service_unavailable")
        refused = await host.request("start")
        assert (refused["type"], refused["code"]) == ("error", "service_unavailable")
        assert scene.state() == "open"
        await host.sync()
        # What is relayed across nodes during the outage is lost (not queued)…
        await host.send(type="ice", to=room.id, candidate=ICE, connection_id="conn-lost")
        await log_says(cluster, 0, "redis bus could not publish; messages lost")
        # A socket that drops now cannot come back yet (1013: try again later); the SDK keeps trying.
        specialist.drop_socket()
        await wait_for(lambda: specialist.close_code == 1013, "the resume refused with 1013")
        assert specialist.last_error is not None
        assert specialist.last_error.data["code"] == "service_unavailable"
        gone_mark = len(host.seen)
        gone.ws.transport.abort()

        cluster.redis.start()
        restarted = len(host.seen)
        await readiness_becomes(cluster, 200)
        # …and every socket is told to resync, with the state as it stands: nobody lost their place.
        for me, other in ((host, room), (room, host)):
            resync = await me.expect("resync", timeout=WAIT_S)
            assert (resync["reason"], resync["status"], resync["consultation_state"]) == (
                "presence_lost",
                "admitted",
                "open",
            )
            seen = {p["id"]: p["status"] for p in resync["participants"]}
            assert seen == {other.id: "admitted", specialist_id: "waiting", gone.id: "waiting"}
        assert "conn-lost" not in [m.get("connection_id") for m in room.seen]

        # The host's commands work again and reach the other node.
        assert (await host.request("start"))["type"] == "ack"
        await room.expect("consultation.live")
        assert scene.state() == "live"
        # Messages cross the nodes again, both ways.
        await host.send(type="ice", to=room.id, candidate=ICE, connection_id="conn-after")
        assert (await room.expect("ice"))["from"] == host.id
        await room.send(type="ice", to=host.id, candidate=ICE, connection_id="conn-after")
        assert (await host.expect("ice"))["from"] == room.id

        # The specialist is back by itself, waiting; the host on the other node admits it.
        await wait_for(lambda: specialist.state == "open" and specialist.reconnects == 1, "specialist back")
        assert specialist.welcome is not None
        welcome = specialist.welcome
        assert (welcome.participant_id, welcome.resumed, welcome.status) == (specialist_id, True, "waiting")
        assert (await host.request("admit", participant=specialist_id))["type"] == "ack"
        while (await specialist.next_event(timeout=WAIT_S)).type != "admitted":
            pass
        # Presence was put back: the room's socket drops and resumes on the other node, still admitted.
        mark = len(host.seen)
        room.ws.transport.abort()
        await expect_about(host, "participant.disconnected", room.id, since=mark)
        mark = len(host.seen)
        back = await scene.join(
            room_token,
            node=0,
            resume_token=room.welcome["resume_token"],
            **scene.posture_fields(scene.room, room_token, node=0),
        )
        assert (back.welcome["resumed"], back.welcome["status"]) == (True, "admitted")
        await expect_about(host, "participant.resumed", room.id, since=mark)
        # The one that went away during the outage is not a ghost: it times out like any other.
        left = await expect_about(host, "participant.left", gone.id, since=gone_mark)
        assert left["reason"] == "timeout"
        # Heartbeats went with Redis: nobody took the room's node for dead (one drop: the one above).
        drops = [m for m in host.seen[restarted:] if m["type"] == "participant.disconnected"]
        assert [m["participant"]["id"] for m in drops].count(room.id) == 1
    finally:
        await specialist.close()


# --- 3. a node that vanishes without a word -------------------------------------------------


async def test_the_participants_of_a_sigkilled_node_time_out_on_the_surviving_node(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(nodes=2, TELEMED_SIGNALLING_RESUME_GRACE="PT1S")
    scene = cluster.scene
    host = await scene.join_host(node=0)
    room, _ = await join_room_peer(scene, node=1)
    await scene.admitted(host, room)

    cluster.nodes[1].kill()
    # Its heartbeat lapses (15 s), the next sweep treats its sockets as dropped, the grace runs out.
    disconnected = await host.expect("participant.disconnected", timeout=45.0)
    assert disconnected["participant"]["id"] == room.id
    left = await host.expect("participant.left", timeout=WAIT_S)
    assert (left["participant"]["id"], left["reason"]) == (room.id, "timeout")
    assert signalling_entries(scene, room.id)[-1] == ("signalling.left", {"reason": "timeout"})
    # The host's own call goes on: its socket answers.
    await host.sync()
