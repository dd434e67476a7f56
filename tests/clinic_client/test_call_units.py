"""Fast checks of the call package's parts: payloads, ICE config, markers, fan-out, errors."""

from __future__ import annotations

import asyncio
import fractions
from pathlib import Path

import av
import pytest
from aiortc import RTCIceTransportPolicy
from aiortc.mediastreams import MediaStreamError

from clinic_client.call import (
    Call,
    IceConfig,
    InvalidCallState,
    InvalidSignal,
    MediaFileRecorder,
    SyntheticVideoTrack,
    ToneAudioTrack,
    UnknownParticipant,
    audio_level,
    open_media,
    read_frame_marker,
    synthetic_media,
)
from clinic_client.call.fanout import FrameFanout
from clinic_client.call.ice import keep_only_relay_candidates, parse_remote_candidate
from clinic_client.call.media import render_marked_frame
from clinic_client.call.signalling import parse_description, parse_ice
from tests.support.loopback import LoopbackNetwork

SDP_WITH_CANDIDATES = "\r\n".join(
    [
        "v=0",
        "m=audio 50000 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 192.0.2.2",
        "a=candidate:1 1 udp 2130706431 192.0.2.2 50000 typ host",
        "a=candidate:2 1 udp 1694498815 203.0.113.7 50001 typ srflx raddr 192.0.2.2 rport 50000",
        "a=candidate:3 1 udp 16777215 198.51.100.9 40000 typ relay raddr 0.0.0.0 rport 9",
        "a=end-of-candidates",
        "",
    ]
)


# --- signalling payloads -------------------------------------------------------------


def test_offer_payload_is_validated_and_errors_name_fields_not_values() -> None:
    good = {"type": "offer", "sdp": "v=0\r\n", "connection_id": "abcdefgh1234"}
    assert parse_description("offer", good).connection_id == "abcdefgh1234"

    with pytest.raises(InvalidSignal) as info:
        parse_description("offer", {"type": "offer", "sdp": "v=0 secret-ish", "connection_id": "x"})
    assert info.value.code == "invalid_signal"
    assert "connection_id" in str(info.value)
    assert "secret-ish" not in str(info.value)

    with pytest.raises(InvalidSignal, match='type "answer" sent as "offer"'):
        parse_description("offer", {**good, "type": "answer"})
    with pytest.raises(InvalidSignal, match="sdp"):
        parse_description("offer", {"type": "offer", "connection_id": "abcdefgh1234"})


def test_ice_payload_accepts_browser_json_and_end_of_candidates() -> None:
    browser = {
        "candidate": "candidate:842163049 1 udp 1677729535 203.0.113.7 50001 typ srflx "
        "raddr 0.0.0.0 rport 0 generation 0 ufrag EsAw network-cost 999",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "EsAw",
    }
    parsed = parse_ice(browser)
    assert parsed.sdp_mid == "0" and parsed.connection_id is None
    candidate = parse_remote_candidate(parsed.candidate, sdp_mid="0", sdp_mline_index=0)
    assert (candidate.type, candidate.ip, candidate.port) == ("srflx", "203.0.113.7", 50001)
    assert parse_ice({"candidate": ""}).candidate == ""  # end-of-candidates

    with pytest.raises(InvalidSignal, match="sdpMid or sdpMLineIndex"):
        parse_ice({"candidate": browser["candidate"]})
    with pytest.raises(InvalidSignal, match="could not be parsed"):
        parse_remote_candidate("candidate:nonsense", sdp_mid="0", sdp_mline_index=None)


async def test_call_refuses_malformed_or_misaddressed_messages() -> None:
    network = LoopbackNetwork()
    call = Call(participant_id="a", signalling=network.channel("a"), ice=IceConfig())
    try:
        with pytest.raises(InvalidSignal, match='Unknown signalling message kind "bye"'):
            await call.handle_remote("b", "bye", {})
        with pytest.raises(InvalidSignal, match="from ourselves"):
            await call.handle_remote("a", "ice", {"candidate": ""})
        answer = {"type": "answer", "sdp": "v=0\r\n", "connection_id": "abcdefgh1234"}
        with pytest.raises(UnknownParticipant) as info:
            await call.handle_remote("stranger", "answer", answer)
        assert info.value.status == 404
        with pytest.raises(UnknownParticipant):
            await call.restart_peer("stranger")
        with pytest.raises(InvalidSignal):
            await call.connect_to("a")
    finally:
        await call.close()
        await network.close()
    with pytest.raises(InvalidCallState, match='Cannot connect in call state "closed"'):
        await call.connect_to("b")
    # Messages still in flight after hang-up are dropped quietly.
    await call.handle_remote("b", "ice", {"candidate": ""})


async def test_polite_side_waits_for_the_offer_instead_of_sending_one() -> None:
    network = LoopbackNetwork()
    call = Call(participant_id="zed", signalling=network.channel("zed"), ice=IceConfig())
    try:
        await call.connect_to("amy")
        assert call.is_polite("amy")
        assert call.state("amy") == "connecting"
        assert network.log == []
        event = call.events.get_nowait()
        assert (event.participant_id, event.state, event.reason) == (
            "amy",
            "connecting",
            "awaiting_offer",
        )
    finally:
        await call.close()
        await network.close()


# --- ICE configuration ---------------------------------------------------------------


def test_ice_config_from_server_credentials_maps_policy_and_hides_the_password() -> None:
    ice = IceConfig.from_turn_credentials(
        {"urls": ["turn:turn.example.org:3478"], "username": "1700:room", "credential": "pw=="},
        policy="relay",
    )
    config = ice.rtc_configuration()
    assert config.iceTransportPolicy == RTCIceTransportPolicy.RELAY
    assert config.iceServers is not None
    assert [s.username for s in config.iceServers] == ["1700:room"]
    assert ice.has_turn
    assert "pw==" not in repr(ice)
    with pytest.raises(ValueError, match="username"):
        IceConfig.from_turn_credentials({"urls": ["turn:x"]}, policy="relay")
    with pytest.raises(ValueError, match="urls"):
        IceConfig.from_turn_credentials({"username": "u", "credential": "c"}, policy="all")


def test_no_servers_means_no_stun_at_all() -> None:
    # aiortc falls back to a public Google STUN server when given None.
    config = IceConfig().rtc_configuration()
    assert config.iceServers == []
    assert config.iceTransportPolicy == RTCIceTransportPolicy.ALL


def test_non_relay_candidates_are_stripped_from_outgoing_sdp() -> None:
    sdp, removed = keep_only_relay_candidates(SDP_WITH_CANDIDATES)
    assert removed == 2
    assert "typ host" not in sdp and "typ srflx" not in sdp
    assert "typ relay" in sdp and "a=end-of-candidates" in sdp
    # The default address points at the relay too: no local or public address is left.
    assert "192.0.2.2" not in sdp and "203.0.113.7" not in sdp
    assert "m=audio 40000 UDP/TLS/RTP/SAVPF 111" in sdp
    assert "c=IN IP4 198.51.100.9" in sdp


# --- media ---------------------------------------------------------------------------


def test_frame_marker_round_trips_and_plain_frames_have_none() -> None:
    marker = read_frame_marker(render_marked_frame(counter=40_000, source_tag=200))
    assert marker is not None and (marker.counter, marker.source_tag) == (40_000, 200)
    plain = av.VideoFrame(width=320, height=240, format="yuv420p")
    for plane in plain.planes:
        plane.update(bytes([128]) * plane.buffer_size)
    assert read_frame_marker(plain) is None


async def test_synthetic_tracks_produce_live_numbered_frames_and_a_tone() -> None:
    video = SyntheticVideoTrack(source_tag=5, fps=30)
    audio = ToneAudioTrack(frequency_hz=440, amplitude=0.5)
    frames = [await video.recv() for _ in range(3)]
    markers = [read_frame_marker(f) for f in frames]
    assert [m.counter for m in markers if m] == [0, 1, 2]
    pts = [f.pts or 0 for f in frames]
    assert pts[0] < pts[1] < pts[2]
    tone = await audio.recv()
    assert tone.samples == 960 and tone.sample_rate == 48_000
    assert audio_level(tone) == pytest.approx(0.5 / 2**0.5, rel=0.05)
    video.stop()
    audio.stop()
    with pytest.raises(MediaStreamError):
        await video.recv()


def test_recorder_refuses_unknown_containers_and_video_only_wav(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='Cannot record to ".avi"'):
        MediaFileRecorder(tmp_path / "x.avi", video=SyntheticVideoTrack())
    with pytest.raises(ValueError, match="no suitable track"):
        MediaFileRecorder(tmp_path / "x.wav", video=SyntheticVideoTrack())


def _video_frame(pts: int) -> av.VideoFrame:
    frame = av.VideoFrame(width=16, height=16, format="yuv420p")
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, 90_000)
    return frame


async def test_fanout_drops_oldest_for_slow_consumers_and_ends_on_close() -> None:
    fanout = FrameFanout("video", maxsize=2)
    slow = fanout.subscribe()
    for pts in (1, 2, 3):
        fanout.publish(_video_frame(pts))
    assert [(await slow.recv()).pts for _ in range(2)] == [2, 3]
    pending = asyncio.ensure_future(slow.recv())
    await asyncio.sleep(0)
    fanout.close()
    with pytest.raises(MediaStreamError):
        await pending
    with pytest.raises(MediaStreamError):
        await fanout.subscribe().recv()


async def test_fanout_keeps_timestamps_continuous_across_sources() -> None:
    fanout = FrameFanout("video", maxsize=10, continuous_pts=True)
    consumer = fanout.subscribe()
    for pts in (900_000, 903_000):
        fanout.publish(_video_frame(pts), generation="first-connection")
    for pts in (12_000, 15_000):  # a new peer connection starts its clock elsewhere
        fanout.publish(_video_frame(pts), generation="second-connection")
    seen = [(await consumer.recv()).pts for _ in range(4)]
    assert seen == [0, 3000, 6000, 9000]


@pytest.mark.slow
async def test_a_recorded_file_plays_back_as_a_media_source(tmp_path: Path) -> None:
    path = tmp_path / "greeting.mkv"
    source = synthetic_media(source_tag=4, fps=30)
    recorder = MediaFileRecorder(path, audio=source.audio, video=source.video)
    await recorder.start()
    await asyncio.sleep(1.0)
    await recorder.stop()  # also stops the synthetic tracks

    played = open_media(path)
    try:
        assert played.video is not None and played.audio is not None
        frames = [await asyncio.wait_for(played.video.recv(), timeout=5) for _ in range(5)]
        markers = [read_frame_marker(f) for f in frames if isinstance(f, av.VideoFrame)]
        counters = [m.counter for m in markers if m is not None and m.source_tag == 4]
        assert len(counters) == 5 and counters == sorted(counters) and counters[0] < counters[-1]
        assert isinstance(await asyncio.wait_for(played.audio.recv(), timeout=5), av.AudioFrame)
    finally:
        played.stop()
