"""Real aiortc calls over the loopback signalling: media both ways, mesh, recovery, recording."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc import RTCConfiguration, RTCIceTransportPolicy

import clinic_client.call.peer as peer_module
from clinic_client.call import (
    Call,
    CallEvent,
    CallFull,
    IceConfig,
    RecoveryPolicy,
    SignalKind,
    audio_level,
    read_frame_marker,
)
from clinic_client.call.ice import sdp_candidate_types
from tests.support.loopback import CallHarness, connected_pair, eventually, fresh_video

pytestmark = pytest.mark.slow

# Short enough that a recovery test finishes in seconds, long enough not to fire on a
# loaded CI machine while the call is healthy.
FAST_RECOVERY = RecoveryPolicy(
    stall_after_s=2.0,
    restart_after_s=0.5,
    polite_extra_s=1.5,
    connect_timeout_s=8.0,
    check_interval_s=0.25,
)
NO_RECOVERY = RecoveryPolicy(enabled=False, check_interval_s=0.25)


@pytest.fixture
async def harness() -> AsyncIterator[CallHarness]:
    h = CallHarness()
    try:
        yield h
    finally:
        await h.close()
    assert h.network.errors == [], f"handle_remote raised: {h.network.errors!r}"


async def test_two_peers_exchange_live_video_and_audio_both_ways(harness: CallHarness) -> None:
    clinician = harness.call("clinician", source_tag=1)
    room = harness.call("room", source_tag=2)

    await connected_pair(clinician, room)

    # The lower id made the offer; the other side only answered.
    assert [d.sender for d in harness.network.sent("offer")] == ["clinician"]
    assert [d.sender for d in harness.network.sent("answer")] == ["room"]
    await fresh_video(clinician, "room", tag=2)
    await fresh_video(room, "clinician", tag=1)
    await eventually(
        lambda: clinician.received_frames("room").audio > 25 and room.received_frames("clinician").audio > 25,
        timeout=5,
        message=lambda: (
            f"audio frames: clinician got {clinician.received_frames('room')}, "
            f"room got {room.received_frames('clinician')}"
        ),
    )
    tone = room.latest_frame("clinician", "audio")
    assert isinstance(tone, av.AudioFrame)
    assert audio_level(tone) > 0.05, "the tone arrived as silence"

    stats = (await clinician.stats())["room"]
    assert stats.state == "connected"
    assert stats.local_candidate_type == "host"  # policy "all" on one machine: direct path
    assert stats.frames_received > 0
    assert stats.bitrate_in_kbps is not None and stats.bitrate_in_kbps > 0
    assert stats.bitrate_out_kbps is not None and stats.bitrate_out_kbps > 0
    assert stats.packet_loss_pct == 0.0
    assert stats.jitter_ms is not None
    # RTT comes from the RTCP receiver reports the far side sends every second or so.
    async with asyncio.timeout(10):
        while (rtt := (await clinician.stats())["room"].rtt_ms) is None:
            await asyncio.sleep(0.2)
    assert 0 < rtt < 1000


async def test_three_party_mesh_everyone_receives_the_other_two(harness: CallHarness) -> None:
    tags = {"clinician": 1, "room": 2, "specialist": 3}
    calls = {pid: harness.call(pid, source_tag=tag) for pid, tag in tags.items()}

    for pid, call in calls.items():
        for other in calls:
            if other != pid:
                await call.connect_to(other)
    for pid, call in calls.items():
        for other in calls:
            if other != pid:
                await call.wait_for_state(other, "connected", timeout=15)

    for pid, call in calls.items():
        assert sorted(call.participants) == sorted(p for p in calls if p != pid)
        for other in call.participants:
            # Each stream carries its sender's tag: nothing is mixed up between peers.
            await fresh_video(call, other, tag=tags[other], timeout=8)
            assert call.received_frames(other).audio > 0
    # Three pairs, one offer each: the lower id of every pair.
    offers = sorted((d.sender, d.receiver) for d in harness.network.sent("offer"))
    assert offers == [("clinician", "room"), ("clinician", "specialist"), ("room", "specialist")]


async def test_a_fourth_participant_is_refused(harness: CallHarness) -> None:
    call = harness.call("a")
    harness.call("b")
    harness.call("c")
    await call.connect_to("b")
    await call.connect_to("c")

    with pytest.raises(CallFull) as info:
        await call.connect_to("d")
    assert info.value.code == "call_full"


async def test_renegotiation_keeps_the_same_peer_connection(harness: CallHarness) -> None:
    a = harness.call("a", source_tag=1)
    b = harness.call("b", source_tag=2)
    await connected_pair(a, b)
    peer_before = a.peer("b")
    assert peer_before is not None

    await a.renegotiate("b")

    await eventually(
        lambda: len(harness.network.sent("answer")) == 2,
        timeout=5,
        message="no answer to the renegotiation offer",
    )
    await eventually(
        lambda: peer_before.signaling_state == "stable",
        timeout=5,
        message=lambda: f"signaling state stuck in {peer_before.signaling_state}",
    )
    assert a.peer("b") is peer_before
    ids = {d.payload["connection_id"] for d in harness.network.sent("offer")}
    assert ids == {peer_before.connection_id}
    assert a.state("b") == "connected"
    await fresh_video(a, "b", tag=2)
    await fresh_video(b, "a", tag=1)


async def _drop_network(call: Call, remote_id: str) -> str:
    """Kill one side's ICE transport mid-call, like a modem losing its link."""
    peer = call.peer(remote_id)
    assert peer is not None
    ice_transport = peer.pc.getTransceivers()[0].receiver.transport.transport
    await ice_transport.stop()
    return peer.connection_id


async def test_restart_peer_after_a_network_drop_brings_media_back(harness: CallHarness) -> None:
    a = harness.call("a", source_tag=1, recovery=NO_RECOVERY)
    b = harness.call("b", source_tag=2, recovery=NO_RECOVERY)
    await connected_pair(a, b)
    await fresh_video(a, "b", tag=2)
    old_connection = await _drop_network(b, "a")
    await b.wait_for_state("a", "failed", "disconnected", timeout=5)
    frozen_at = a.received_frames("b").video

    await b.restart_peer("a")  # e.g. the signalling client saw its socket resume

    await a.wait_for_state("b", "connected", timeout=10)
    await b.wait_for_state("a", "connected", timeout=10)
    new_peer = a.peer("b")
    assert new_peer is not None and new_peer.connection_id != old_connection
    assert b.peer("a") is not None and b.peer("a").connection_id == new_peer.connection_id  # type: ignore[union-attr]
    await fresh_video(a, "b", tag=2)
    await fresh_video(b, "a", tag=1)
    assert a.received_frames("b").video > frozen_at


async def test_glare_both_sides_restart_at_once_and_agree_on_the_impolite_offer(
    harness: CallHarness,
) -> None:
    a = harness.call("a", source_tag=1, recovery=NO_RECOVERY)
    b = harness.call("b", source_tag=2, recovery=NO_RECOVERY)
    await connected_pair(a, b)
    offers_before = len(harness.network.sent("offer"))

    await asyncio.gather(a.restart_peer("b"), b.restart_peer("a"))

    new_offers = harness.network.sent("offer")[offers_before:]
    assert sorted(d.sender for d in new_offers) == ["a", "b"]  # a real collision
    winner = next(d.payload["connection_id"] for d in new_offers if d.sender == "a")
    await eventually(
        lambda: (
            (pa := a.peer("b")) is not None
            and (pb := b.peer("a")) is not None
            and pa.connection_id == pb.connection_id == winner
            and a.state("b") == b.state("a") == "connected"
        ),
        timeout=10,
        message=lambda: f"no agreement: a sees {a.state('b')}, b sees {b.state('a')}",
    )
    await fresh_video(a, "b", tag=2)
    await fresh_video(b, "a", tag=1)


@pytest.mark.parametrize("dropped", ["a", "b"])
async def test_a_dropped_connection_recovers_by_itself(harness: CallHarness, dropped: str) -> None:
    events: list[CallEvent] = []
    a = harness.call("a", source_tag=1, recovery=FAST_RECOVERY)
    b = harness.call("b", source_tag=2, recovery=FAST_RECOVERY)
    await connected_pair(a, b)
    await fresh_video(b, "a", tag=1)
    victim, remote = (a, "b") if dropped == "a" else (b, "a")
    old_connection = await _drop_network(victim, remote)

    def recovered() -> bool:
        pa, pb = a.peer("b"), b.peer("a")
        return (
            pa is not None
            and pb is not None
            and pa.connection_id == pb.connection_id != old_connection
            and a.state("b") == "connected"
            and b.state("a") == "connected"
        )

    await eventually(
        recovered,
        timeout=15,
        message=lambda: f"not recovered: a sees {a.state('b')}, b sees {b.state('a')}",
    )
    await fresh_video(b, "a", tag=1)
    await fresh_video(a, "b", tag=2)
    while not victim.events.empty():
        events.append(victim.events.get_nowait())
    # The side whose network dropped told its application about the loss, then the recovery.
    lost = next(i for i, e in enumerate(events) if e.state in ("disconnected", "failed"))
    assert events[lost].connection_id == old_connection
    assert events[lost].reason in {"transport_lost", "closed_unexpectedly", "stalled"}
    back = [e for e in events[lost:] if e.state == "connected"]
    assert back and back[-1].connection_id != old_connection


@pytest.mark.parametrize(
    ("suffix", "kinds"),
    [(".mp4", {"audio", "video"}), (".mkv", {"audio", "video"}), (".wav", {"audio"})],
)
async def test_recording_a_participant_writes_a_playable_file(
    harness: CallHarness, tmp_path: Path, suffix: str, kinds: set[str]
) -> None:
    a = harness.call("a", source_tag=1)
    b = harness.call("b", source_tag=7)
    await connected_pair(a, b)
    path = tmp_path / f"room{suffix}"

    # Count from the moment recording starts: frames received before it are not in the file.
    baseline = a.received_frames("b").video
    recorder = await a.record("b", path)
    await eventually(
        lambda: a.received_frames("b").video > baseline + 45,
        timeout=15,
        message=lambda: f"too few frames to record: {a.received_frames('b')}",
    )
    await asyncio.sleep(0.5)
    await recorder.stop()

    assert path.stat().st_size > 1000
    with av.open(str(path)) as container:
        assert {s.type for s in container.streams} == kinds
        if "video" in kinds:
            counters = [
                m.counter
                for frame in container.decode(video=0)
                if (m := read_frame_marker(frame)) is not None and m.source_tag == 7
            ]
            assert len(counters) > 10, "recorded video does not show the participant's frames"
            assert counters == sorted(counters), "recorded frames are out of order"
    with av.open(str(path)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        assert samples > 24_000, "less than half a second of audio was recorded"


async def test_a_recording_continues_across_a_peer_restart(harness: CallHarness, tmp_path: Path) -> None:
    a = harness.call("a", source_tag=1, recovery=NO_RECOVERY)
    b = harness.call("b", source_tag=9, recovery=NO_RECOVERY)
    await connected_pair(a, b)
    path = tmp_path / "across-restart.mkv"
    recorder = await a.record("b", path)
    await eventually(lambda: a.received_frames("b").video > 15, timeout=5, message="no video before the drop")
    before = await fresh_video(a, "b", tag=9)
    await _drop_network(b, "a")
    await a.restart_peer("b")
    await a.wait_for_state("b", "connected", timeout=10)
    after = await fresh_video(a, "b", tag=9)
    await asyncio.sleep(0.5)
    await recorder.stop()

    with av.open(str(path)) as container:
        counters = [
            m.counter
            for frame in container.decode(video=0)
            if (m := read_frame_marker(frame)) is not None and m.source_tag == 9
        ]
    # One file, playable end to end, holding frames from both peer connections.
    assert counters == sorted(counters)
    assert counters[0] <= before < after <= counters[-1]


async def test_relay_only_without_a_turn_server_never_falls_back_to_a_direct_path(
    harness: CallHarness,
) -> None:
    room = harness.call("a-room", ice=IceConfig(policy="relay"), recovery=NO_RECOVERY)
    harness.call("b-clinician", ice=IceConfig(policy="all"), recovery=NO_RECOVERY)

    await room.connect_to("b-clinician")

    assert room.state("b-clinician") == "failed"
    event = await asyncio.wait_for(_last_event(room), timeout=1)
    assert event.reason == "relay_unavailable"
    # Nothing left the building: no offer with host candidates was ever sent.
    assert harness.network.sent("offer") == []


async def _last_event(call: Call) -> CallEvent:
    event = await call.events.get()
    while not call.events.empty():
        event = call.events.get_nowait()
    return event


class TricklingChannel:
    """Sends SDP without candidates, then each candidate as an "ice" message, like a browser."""

    def __init__(self, harness: CallHarness, participant_id: str) -> None:
        self._inner = harness.network.channel(participant_id)

    async def send(self, to_participant_id: str, kind: SignalKind, payload: dict[str, Any]) -> None:
        if kind == "ice":
            await self._inner.send(to_participant_id, kind, payload)
            return
        lines = str(payload["sdp"]).split("\r\n")
        video_at = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
        # With BUNDLE a browser trickles the candidates of the first m-line only.
        candidates = [line[2:] for line in lines[:video_at] if line.startswith("a=candidate:")]
        stripped = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
        await self._inner.send(to_participant_id, kind, {**payload, "sdp": "\r\n".join(stripped)})
        for candidate in candidates:
            ice = {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}
            await self._inner.send(
                to_participant_id, "ice", {**ice, "connection_id": payload["connection_id"]}
            )
        await self._inner.send(
            to_participant_id, "ice", {"candidate": "", "connection_id": payload["connection_id"]}
        )


async def test_trickled_candidates_from_a_browser_like_peer_are_used(harness: CallHarness) -> None:
    browser = harness.call("a-browser", source_tag=1, signalling=TricklingChannel(harness, "a-browser"))
    room = harness.call("b-room", source_tag=2)

    await connected_pair(browser, room)

    offers = harness.network.sent("offer", sender="a-browser")
    assert offers and "a=candidate:" not in offers[0].payload["sdp"]
    assert len(harness.network.sent("ice", sender="a-browser")) >= 2
    await fresh_video(room, "a-browser", tag=1)
    await fresh_video(browser, "b-room", tag=2)


async def test_host_candidates_never_leave_even_if_the_ice_agent_gathers_them(
    harness: CallHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate an aiortc that ignores iceTransportPolicy: it gathers host candidates.
    real = IceConfig.rtc_configuration
    monkeypatch.setattr(IceConfig, "rtc_configuration", lambda self: replace_policy(real(self)))
    room = harness.call("a-room", ice=IceConfig(policy="relay"), recovery=NO_RECOVERY)
    harness.call("b-clinician", recovery=NO_RECOVERY)

    await room.connect_to("b-clinician")

    peer = room.peer("b-clinician")
    assert peer is not None
    assert "host" in sdp_candidate_types(peer.pc.localDescription.sdp)  # gathered...
    assert harness.network.sent("offer") == []  # ...but never sent
    assert room.state("b-clinician") == "failed"


async def test_a_direct_path_under_relay_policy_is_cut(
    harness: CallHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Last line of defence: the ICE agent ignored the policy and the SDP filter was bypassed.
    real = IceConfig.rtc_configuration
    monkeypatch.setattr(IceConfig, "rtc_configuration", lambda self: replace_policy(real(self)))
    monkeypatch.setattr(peer_module, "keep_only_relay_candidates", lambda sdp: (sdp, 0))
    room = harness.call("a-room", source_tag=1, ice=IceConfig(policy="relay"), recovery=NO_RECOVERY)
    clinician = harness.call("b-clinician", source_tag=2, recovery=NO_RECOVERY)

    await room.connect_to("b-clinician")
    await clinician.connect_to("a-room")

    assert await room.wait_for_state("b-clinician", "failed", timeout=10) == "failed"
    peer = room.peer("b-clinician")
    assert peer is not None and peer.failure_reason == "relay_policy_violation"
    await eventually(
        lambda: peer.pc.connectionState == "closed",
        timeout=5,
        message=lambda: f"direct path still open: {peer.pc.connectionState}",
    )


def replace_policy(config: RTCConfiguration) -> RTCConfiguration:
    return dataclasses.replace(config, iceTransportPolicy=RTCIceTransportPolicy.ALL)
