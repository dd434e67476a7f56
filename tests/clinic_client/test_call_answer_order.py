"""Any valid offer is answered: an aiortc offerer whose m-lines come video first, then audio.

aiortc 1.16 with max-bundle put no ICE candidate in an answer whose transceivers were added
in another order than the offer's m-lines; the room then failed to answer for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from clinic_client.call import CallEvent, IceConfig, RecoveryPolicy, SignalKind, read_frame_marker
from clinic_client.call.ice import sdp_candidate_types
from clinic_client.call.media import synthetic_media
from clinic_client.call.signalling import description_payload
from tests.support.loopback import CallHarness, eventually

pytestmark = pytest.mark.slow


class Outbox:
    """The room's signalling out: what it sends to the offerer."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[tuple[str, SignalKind, dict[str, Any]]] = asyncio.Queue()

    async def send(self, to_participant_id: str, kind: SignalKind, payload: dict[str, Any]) -> None:
        await self.sent.put((to_participant_id, kind, payload))


@pytest.fixture
async def harness() -> AsyncIterator[CallHarness]:
    h = CallHarness()
    try:
        yield h
    finally:
        await h.close()


@pytest.mark.parametrize("order", [("video", "audio"), ("audio", "video")])
async def test_the_room_answers_an_offer_in_either_media_order_and_media_flows(
    harness: CallHarness, order: tuple[str, str]
) -> None:
    outbox = Outbox()
    room = harness.call("room-1", source_tag=2, signalling=outbox)
    media = synthetic_media(source_tag=1)
    offerer = RTCPeerConnection(IceConfig().rtc_configuration())
    received: list[MediaStreamTrack] = []
    offerer.on("track", received.append)
    try:
        tracks = {"audio": media.audio, "video": media.video}
        for kind in order:
            track = tracks[kind]
            assert track is not None
            offerer.addTrack(track)
        await offerer.setLocalDescription(await offerer.createOffer())

        await room.handle_remote(
            "host-9", "offer", description_payload("offer", offerer.localDescription.sdp, "connection-0001")
        )
        to, kind, payload = await asyncio.wait_for(outbox.sent.get(), timeout=10)

        assert (to, kind) == ("host-9", "answer")
        answer = payload["sdp"]
        assert sdp_candidate_types(answer), "the answer carries no ICE candidate"
        assert [m.kind for m in SessionDescription.parse(answer).media] == list(order)
        assert [m.direction for m in SessionDescription.parse(answer).media] == ["sendrecv", "sendrecv"]
        await offerer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await room.wait_for_state("host-9", "connected", timeout=10)

        # Decoded both ways: the room decodes the offerer's video and audio ...
        await eventually(
            lambda: room.received_frames("host-9").video > 3 and room.received_frames("host-9").audio > 3,
            timeout=10,
            message=lambda: f"room decoded {room.received_frames('host-9')}",
        )
        frame = room.latest_frame("host-9", "video")
        assert isinstance(frame, av.VideoFrame)
        marker = read_frame_marker(frame)
        assert marker is not None and marker.source_tag == 1
        # ... and the offerer decodes the room's marked video.
        [video_in] = [t for t in received if t.kind == "video"]
        for _ in range(60):
            frame = await asyncio.wait_for(video_in.recv(), timeout=10)
            assert isinstance(frame, av.VideoFrame)
            marker = read_frame_marker(frame)
            if marker is not None:
                break
        assert marker is not None and marker.source_tag == 2
    finally:
        await offerer.close()
        media.stop()


async def test_a_room_that_cannot_answer_gives_up_after_bounded_attempts_with_a_code(
    harness: CallHarness,
) -> None:
    # Relay-only without a TURN server: no answer and no offer of its own can ever be made.
    recovery = RecoveryPolicy(
        restart_after_s=0.1, polite_extra_s=0.1, max_backoff_s=0.2, check_interval_s=0.05, max_attempts=3
    )
    room = harness.call("room-1", ice=IceConfig(policy="relay"), recovery=recovery)
    clinician = harness.call("clinician", recovery=RecoveryPolicy(enabled=False))

    await clinician.connect_to("room-1")  # the impolite side offers; the room fails to answer
    events: list[CallEvent] = []
    while not events or events[-1].reason != "recovery_exhausted":
        events.append(await asyncio.wait_for(room.events.get(), timeout=30))

    failure = room.failure("clinician")
    assert failure is not None
    assert (failure.code, failure.status) == ("recovery_exhausted", 503)
    assert failure.extra == {"last_reason": "relay_unavailable", "attempts": 3}
    assert str(failure) == 'Cannot connect to "clinician": 3 attempts failed (last: relay_unavailable)'
    assert room.state("clinician") == "failed"
    assert [e.reason for e in events if e.state == "connecting"].count("recovering") == 3
    assert [e.reason for e in events if e.state == "failed"][0] == "relay_unavailable"
    # And it stays given up: many more supervision rounds start no new attempt.
    for _ in range(10):
        await asyncio.sleep(recovery.check_interval_s)
    assert room.events.empty()
    assert harness.network.sent("offer", sender="room-1") == []
