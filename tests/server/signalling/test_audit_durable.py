"""Every signalling decision is in the audit log before anyone hears of it, and none is ever lost.

Refused hellos are recorded (why, from where, the token's jti only once it verified, never
the token). Entries are committed before the answer goes out: the tests read the table the
moment the answer arrives, without waiting. A failing audit store makes the action fail
visibly (``audit_unavailable``) and undone, instead of going on unrecorded.
"""

from __future__ import annotations

import json
from datetime import timedelta

from jose import jwt as jose_jwt
from sqlalchemy import text
from websockets.asyncio.client import connect

from records.audit.chain import AuditEntry
from records.audit.log import iter_entries
from server.consultations import service as consultations
from server.db import session_scope
from server.devices.enrolment import revoke_device
from server.devices.models import Device
from tests.support.signalling_scene import TIMEOUT, Peer, Scene


def _entries(scene: Scene, action: str) -> list[AuditEntry]:
    with session_scope(scene.services.engine) as session:
        return [e for e in iter_entries(session=session) if e.action == action]


def _fail_audit_writes(scene: Scene, action: str) -> None:
    """Make the audit store refuse entries of one action (as a full disk or a lost database would)."""
    with scene.services.engine.begin() as db:
        db.execute(
            text(
                f"CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries WHEN NEW.action = '{action}' "
                "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"
            )
        )


def _statuses(scene: Scene) -> dict[str, str]:
    """What the hub holds for the consultation, participant by participant."""
    hub = scene.services.hub
    assert hub is not None
    return {r.id: r.status for r in hub.participants(scene.consultation_id)}


async def _connect(scene: Scene, request_id: str) -> Peer:
    ws = await connect(
        scene.nodes[0].ws_url,
        max_size=None,
        open_timeout=TIMEOUT,
        additional_headers={"X-Request-ID": request_id},
    )
    peer = Peer(ws)
    scene.peers.append(peer)
    return peer


async def test_refused_hellos_are_audited_with_their_reason_and_origin(scene: Scene) -> None:
    garbage = "not-a-jwt-at-all"
    bad = await _connect(scene, "req-hello-garbage")
    await bad.send(type="hello", join_token=garbage)
    assert (await bad.expect("error"))["code"] == "unauthenticated"
    assert await bad.closed() == 4401

    wrong_audience = scene.services.jwt.issue(
        subject=f"host:{scene.host_user_id}",
        audience="telemed-api",
        ttl=timedelta(minutes=5),
        claims={"cid": scene.consultation_id, "role": "host", "name": "Dr Host"},
    )
    other = await _connect(scene, "req-hello-audience")
    await other.send(type="hello", join_token=wrong_audience)
    assert (await other.expect("error"))["code"] == "unauthenticated"
    assert await other.closed() == 4401

    # A verified room token with the laptop's posture: refused, and now the jti is known.
    room_token = scene.room_token()
    wrong_device = await _connect(scene, "req-hello-device")
    await wrong_device.send(
        type="hello", join_token=room_token, **scene.posture_fields(scene.laptop, room_token)
    )
    assert (await wrong_device.expect("error"))["code"] == "forbidden"
    assert await wrong_device.closed() == 4403

    refused = _entries(scene, "signalling.join_refused")
    assert [(e.outcome, e.request_id, e.detail["reason"], e.detail.get("cause")) for e in refused] == [
        ("denied", "req-hello-garbage", "unauthenticated", "invalid_token"),
        ("denied", "req-hello-audience", "unauthenticated", "wrong_audience"),
        ("denied", "req-hello-device", "forbidden", None),
    ]
    assert all(e.ip == "127.0.0.1" for e in refused)
    assert [e.authority_jti for e in refused[:2]] == [None, None]
    last = refused[2]
    assert last.authority_jti == jose_jwt.get_unverified_claims(room_token)["jti"]
    assert (last.actor_id, last.actor_role, last.consultation_id, last.patient_id, last.device_id) == (
        f"room:{scene.room.id}",
        "room",
        scene.consultation_id,
        scene.patient_id,
        scene.room.id,
    )
    for entry in refused:
        exported = json.dumps(entry.to_export())
        for token in (garbage, wrong_audience, room_token):
            assert token not in exported


async def test_a_hello_from_a_revoked_room_is_audited_with_the_device_refusal(scene: Scene) -> None:
    token = scene.room_token()
    fields = scene.posture_fields(scene.room, token)
    with session_scope(scene.services.engine) as session:
        device = session.get(Device, scene.room.id)
        assert device is not None
        revoke_device(session=session, device=device, by_user_id=None, reason="lost")
    peer = await _connect(scene, "req-hello-revoked")
    await peer.send(type="hello", join_token=token, **fields)
    assert (await peer.expect("error"))["code"] == "posture_refused"
    [refused] = _entries(scene, "signalling.join_refused")
    assert (refused.detail["reason"], refused.detail["cause"]) == ("posture_refused", "device_revoked")
    [posture] = _entries(scene, "device.posture")
    assert (posture.outcome, posture.device_id, posture.detail["reason"]) == (
        "denied",
        scene.room.id,
        "device_revoked",
    )


async def test_every_entry_is_in_the_table_when_the_answer_arrives(scene: Scene) -> None:
    host = await scene.join_host()
    # No waiting: the welcome went out after the entry was committed.
    assert [e.actor_id for e in _entries(scene, "signalling.joined")] == [host.id]
    room = await scene.join_room()
    assert [e.actor_id for e in _entries(scene, "signalling.joined")] == [host.id, room.id]
    assert (await host.request("admit", participant=room.id))["type"] == "ack"
    [admitted] = _entries(scene, "signalling.admitted")
    assert admitted.detail["participant"] == room.id and admitted.request_id and admitted.ip
    scene.prepare_start()
    assert (await host.request("start"))["type"] == "ack"
    [started] = _entries(scene, "signalling.started")
    # The consultation's own entry, in the same transaction, says where the host is too.
    [live] = [e for e in _entries(scene, "consultation.started") if e.outcome == "success"]
    assert (live.ip, live.request_id) == (started.ip, started.request_id) and live.ip
    assert (await host.request("return_to_waiting", participant=room.id))["type"] == "ack"
    assert len(_entries(scene, "signalling.returned")) == 1
    assert (await room.request("leave"))["type"] == "ack"
    assert [e.actor_id for e in _entries(scene, "signalling.left")] == [room.id]


async def test_a_failing_audit_store_refuses_the_admission_and_leaves_it_undone(scene: Scene) -> None:
    host = await scene.join_host()
    room = await scene.join_room()
    await host.expect("participant.joined")
    _fail_audit_writes(scene, "signalling.admitted")

    answer = await host.request("admit", participant=room.id)
    assert (answer["type"], answer["code"]) == ("error", "audit_unavailable")
    # Nobody was told of an admission, and the room is still waiting: the host may admit it again.
    assert "participant.admitted" not in [m["type"] for m in await host.sync()]
    assert "admitted" not in [m["type"] for m in await room.sync()]
    assert _entries(scene, "signalling.admitted") == []
    assert _statuses(scene)[room.id] == "waiting"


async def test_a_failing_audit_store_refuses_the_join(scene: Scene) -> None:
    _fail_audit_writes(scene, "signalling.joined")
    peer = await scene.connect()
    await peer.send(type="hello", join_token=scene.host_token())
    assert (await peer.expect("error"))["code"] == "audit_unavailable"
    assert await peer.closed() == 1013
    assert "welcome" not in peer.types()
    assert _statuses(scene) == {}


async def test_a_failing_audit_store_refuses_the_start_and_the_consultation_stays_open(scene: Scene) -> None:
    host = await scene.join_host()
    scene.prepare_start()
    _fail_audit_writes(scene, "signalling.started")
    answer = await host.request("start")
    assert (answer["type"], answer["code"]) == ("error", "audit_unavailable")
    # The state change and its entry share one transaction: neither happened.
    assert scene.state() == "open"
    assert not [e for e in _entries(scene, "consultation.started") if e.outcome == "success"]
    with session_scope(scene.services.engine) as session:
        assert (
            consultations.get_consultation(session=session, consultation_id=scene.consultation_id).live_at
            is None
        )
