"""A room endpoint on a poor link: loss, delay and a 20 s outage, through the real server and coturn.

The room is relay-only, so every media packet it sends or receives goes through its TURN
allocation. The server hands out the URL of an :class:`ImpairedTurnRelay` in front of a real
coturn, which impairs the TURN clients whose username names the room (``…:room.room-01``):
ICE, DTLS and SRTP run over the impaired link unmodified. The room's HTTP and signalling
socket go through a :class:`StallingTcpRelay` that the same outage stalls. The host
(clinician) is on a clean link. Both use the SDK's default :class:`RecoveryPolicy`.

Measured figures (frames and audio per window, loss seen) are logged on the
``tests.faults`` logger and attached as test properties (``--junitxml``); they are not
asserted as times. Run: ``.venv/bin/pytest tests/faults/test_poor_link.py -o log_cli=true
--log-cli-level=INFO``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from array import array
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from clinic_client.call import Call as MediaCall
from clinic_client.call import RecoveryPolicy, synthetic_media
from clinic_client.session import ConsultationSession, SessionState
from records.audit.log import iter_entries
from server.db import session_scope
from tests.clinic_client.test_call_e2e import TAGS, Call, Party, media_flows
from tests.support.coturn import CoturnServer, running_coturn
from tests.support.impairment import ImpairedTurnRelay, Link, StallingTcpRelay
from tests.support.signalling_scene import Scene, SceneFactory

pytestmark = [pytest.mark.slow, pytest.mark.coturn]

log = logging.getLogger("tests.faults")

ROOM_TURN_USER = ":room.room-01"  # the server's TURN username for participant room:room-01
TONES = {"host": 440.0, "room": 660.0, "specialist": 880.0}
WINDOW_S = 6.0  # each measurement window
PRODUCTION = RecoveryPolicy()  # what the SDK does by default


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    with running_coturn(Path(tmp_path_factory.mktemp("coturn"))) as server:
        yield server


@dataclass
class PoorLink:
    """The scene, and the room's link: its TURN path and its path to the server."""

    scene: Scene
    link: Link
    turn: ImpairedTurnRelay
    server: StallingTcpRelay


@pytest.fixture
async def poor_link(coturn: CoturnServer, make_scene: SceneFactory) -> AsyncIterator[PoorLink]:
    link = Link()
    async with ImpairedTurnRelay(
        (coturn.host, coturn.port), link=link, impaired=lambda user: user.endswith(ROOM_TURN_USER)
    ) as turn:
        scene = make_scene(turn_urls=[turn.url], turn_secret=coturn.secret.decode())
        address = urlsplit(scene.server.base_url)
        assert address.hostname is not None and address.port is not None
        async with StallingTcpRelay((address.hostname, address.port), link=link) as server:
            yield PoorLink(scene=scene, link=link, turn=turn, server=server)


class FaultCall(Call):
    """The e2e parties, with the default recovery, distinct tones and every state kept."""

    def __init__(self, scene: Scene, *, video: bool = True) -> None:
        super().__init__(scene)
        self.video = video
        self.history: dict[str, list[SessionState]] = {}

    async def _join(self, role: str, url: str, token: str, **options: object) -> Party:
        media = synthetic_media(source_tag=TAGS[role], tone_hz=TONES[role], video=self.video)
        history = self.history.setdefault(role, [])
        session = await ConsultationSession.join(
            url, token, media=media, recovery=PRODUCTION, on_change=history.append, **options
        )
        party = Party(role=role, session=session, media=media)
        self.parties.append(party)
        return party


@pytest.fixture
async def call(poor_link: PoorLink) -> AsyncIterator[FaultCall]:
    c = FaultCall(poor_link.scene)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def audio_call(poor_link: PoorLink) -> AsyncIterator[FaultCall]:
    c = FaultCall(poor_link.scene, video=False)
    try:
        yield c
    finally:
        await c.close()


def media(party: Party) -> MediaCall:
    assert party.session.call is not None
    return party.session.call


def video_frames(receiver: Party, sender: Party) -> int:
    return media(receiver).received_frames(sender.id).video


async def frames_over(window_s: float, host: Party, room: Party) -> dict[str, int]:
    """New decoded video frames at each end over a window: ``room->host`` and ``host->room``."""
    before = (video_frames(host, room), video_frames(room, host))
    await asyncio.sleep(window_s)
    return {
        "room->host": video_frames(host, room) - before[0],
        "host->room": video_frames(room, host) - before[1],
    }


def report(record: Callable[[str, object], None], name: str, value: object) -> None:
    log.info("%s: %s", name, value)
    record(name, value)


async def joined_room(call: FaultCall, link: PoorLink) -> tuple[Party, Party]:
    """Host on a clean link, room behind the impaired one; admitted and media flowing."""
    host = await call.host()
    room = await call.room(server_url=link.server.url)
    await call.admit(host, room)
    return host, room


# --- 1. loss and delay ----------------------------------------------------------------------


async def test_video_keeps_flowing_both_ways_with_5_percent_loss_and_200_ms_delay(
    call: FaultCall, poor_link: PoorLink, record_property: Callable[[str, object], None]
) -> None:
    """Over a 6 s window behind 5 % loss and 200 ms each way, each end decodes at least 30 new
    video frames (of the 90 sent at 15 fps), the picture's counter keeps increasing and the
    session says media is connected."""
    host, room = await joined_room(call, poor_link)
    await media_flows([host, room])
    clean = await frames_over(WINDOW_S, host, room)
    report(record_property, "frames_per_6s_clean", clean)

    poor_link.link.impair(loss=0.05, delay_s=0.2)
    await asyncio.sleep(2.0)  # let the jitter buffers settle on the new delay
    poor = await frames_over(WINDOW_S, host, room)
    report(record_property, "frames_per_6s_5pct_200ms", poor)
    stats = (await room.session.stats())[host.id]
    report(record_property, "room_sees_loss_pct_rtt_ms", (stats.packet_loss_pct, stats.rtt_ms))

    assert poor["room->host"] >= 30 and poor["host->room"] >= 30, poor
    # The loss was real: the relay dropped the room's datagrams both ways, and passed the rest.
    counters = poor_link.turn.counters
    report(record_property, "relay_counters", counters)
    assert counters.dropped["up"] > 0 and counters.dropped["down"] > 0
    assert counters.forwarded["up"] > 10 * counters.dropped["up"]
    assert poor_link.turn.impaired_usernames(), "the room's TURN client was never impaired"
    # Live pictures (counter increasing) and connected media, still on the poor link.
    await media_flows([host, room], timeout=20)
    assert room.session.state.media_connected and host.session.state.media_connected


# --- 2. audio only ----------------------------------------------------------------------------


async def received_audio(track: Any, seconds: float) -> tuple[int, array[int]]:
    """Read a remote audio track for ``seconds``: (frames decoded, mono 8 kHz PCM)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
    pcm: array[int] = array("h")
    frames = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    break
                frames += 1
                for converted in resampler.resample(frame):
                    pcm.frombytes(bytes(converted.planes[0])[: converted.samples * 2])
    track.stop()
    return frames, pcm


async def audio_both_ways(host: Party, room: Party) -> dict[str, tuple[int, array[int]]]:
    """Audio received at each end over the same window: ``room->host`` and ``host->room``."""
    at_host, at_room = await asyncio.gather(
        received_audio(media(host).remote_track(room.id, "audio"), WINDOW_S),
        received_audio(media(room).remote_track(host.id, "audio"), WINDOW_S),
    )
    return {"room->host": at_host, "host->room": at_room}


def goertzel_power(samples: array[int], rate: int, frequency: float) -> float:
    """Power of one frequency in ``samples`` (the Goertzel algorithm: one DFT bin, no numpy)."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coefficient * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coefficient * s1 * s2


def dominant_frequency(samples: array[int], rate: int) -> tuple[float, float]:
    """The strongest frequency from 100 to 2000 Hz (20 Hz steps), and its share of the scanned power."""
    powers = {f: goertzel_power(samples, rate, f) for f in range(100, 2001, 20)}
    best = max(powers, key=lambda f: powers[f])
    return float(best), powers[best] / sum(powers.values())


async def test_audio_only_at_10_percent_loss_stays_intelligible(
    audio_call: FaultCall, poor_link: PoorLink, record_property: Callable[[str, object], None]
) -> None:
    """Audio only (no video source on either side), room behind 10 % loss and 200 ms each way.

    Measure, each direction, over a 6 s window: the audio actually decoded (20 ms Opus frames;
    a lost packet is a missing frame) must be at least 75 % of the
    300 frames sent, and the received signal must still be the sender's tone: the strongest
    frequency of the received PCM (8 kHz, Goertzel scan 100–2000 Hz in 20 Hz steps, over the
    first 2 s) is the tone sent (host 440 Hz, room 660 Hz — not the listener's own) and holds
    at least half of the scanned power."""
    host, room = await joined_room(audio_call, poor_link)
    for party in (host, room):
        await party.session.wait_until(lambda s: s.media_connected, 20)
        assert party.media.video is None
    clean = await audio_both_ways(host, room)
    report(record_property, "audio_frames_per_6s_clean", {k: v[0] for k, v in clean.items()})
    poor_link.link.impair(loss=0.10, delay_s=0.2)
    await asyncio.sleep(2.0)
    poor = await audio_both_ways(host, room)
    (host_frames, host_pcm), (room_frames, room_pcm) = poor["room->host"], poor["host->room"]
    expected = int(WINDOW_S / 0.020)
    report(record_property, "audio_frames_per_6s_10pct", {k: v[0] for k, v in poor.items()})
    assert host_frames >= 0.75 * expected and room_frames >= 0.75 * expected, (host_frames, room_frames)
    assert media(host).received_frames(room.id).video == 0  # audio only: no video at all

    for listener, speaker, pcm in ((host, room, host_pcm), (room, host, room_pcm)):
        frequency, share = dominant_frequency(pcm[:16000], 8000)
        report(record_property, f"tone_at_{listener.role}", (frequency, round(share, 3)))
        assert frequency == TONES[speaker.role], f"{listener.role} hears {frequency} Hz"
        assert share >= 0.5, f"{listener.role}: the tone holds only {share:.0%} of the power"
    assert poor_link.turn.counters.dropped["down"] > 0 and poor_link.turn.counters.dropped["up"] > 0
    assert room.session.state.media_connected


# --- 3. a 20 s outage --------------------------------------------------------------------------


def joins_of(scene: Scene, participant_id: str) -> list[tuple[str, bool]]:
    """``(action, resumed)`` of the room's ``signalling.joined``/``left`` audit entries, in order."""
    with session_scope(scene.services.engine) as session:
        return [
            (e.action, bool(e.detail.get("resumed")))
            for e in iter_entries(session=session)
            if e.action in ("signalling.joined", "signalling.left")
            and e.consultation_id == scene.consultation_id
            and e.actor_id == participant_id
        ]


def statuses_of(history: list[SessionState], participant_id: str) -> set[str]:
    """Every status a session showed for one other participant ("absent" when not listed)."""
    seen: set[str] = set()
    for state in history:
        others = {p.id: p.status for p in state.others}
        seen.add(others.get(participant_id, "absent"))
    return seen


async def test_a_20_s_outage_recovers_the_call_without_anyone_joining_again(
    call: FaultCall, poor_link: PoorLink, record_property: Callable[[str, object], None]
) -> None:
    """The room's link (media and signalling) drops for 20 s in a live consultation and returns:
    the same participants on the same signalling sessions (a resume at most), the consultation
    still live, nobody sent to the waiting room, fresh video decoded at both ends again."""
    scene = poor_link.scene
    host, room = await joined_room(call, poor_link)
    scene.prepare_start()
    await host.session.start_consultation()
    for party in (host, room):
        await party.session.wait_until(lambda s: s.consultation_state == "live")
    await media_flows([host, room])
    room_id, room_session, room_client = room.id, room.session, room.session.client
    joins = joins_of(scene, room.id)
    assert joins == [("signalling.joined", False)], joins
    history_from = {role: len(states) for role, states in call.history.items()}

    poor_link.link.cut()
    await asyncio.sleep(15.0)
    frozen = (video_frames(host, room), video_frames(room, host))
    await asyncio.sleep(5.0)
    # The outage was total: nothing crossed in its last 5 s.
    assert (video_frames(host, room), video_frames(room, host)) == frozen
    report(
        record_property,
        "media_during_outage",
        {"host": host.session.state.media, "room": room.session.state.media},
    )
    poor_link.link.restore()

    await media_flows([host, room], timeout=45)
    after = await frames_over(3.0, host, room)
    report(record_property, "frames_per_3s_after_outage", after)
    assert after["room->host"] > 0 and after["host->room"] > 0
    report(record_property, "room_reconnects", room_client.reconnects)

    # The same people, on the same sessions: no new join, a resume at most.
    assert room.session is room_session and room.session.client is room_client
    assert room.id == room_id and room.session.state.participant_id == room_id
    assert room_client.reconnects <= 1
    if room_client.reconnects:
        assert room_client.welcome is not None and room_client.welcome.resumed
    # The server saw no new join and no departure: at most a resume of the same participant.
    report(record_property, "room_audit_joins", joins_of(scene, room_id))
    assert joins_of(scene, room_id)[1:] in ([], [("signalling.joined", True)])
    assert host.session.client.reconnects == 0
    # Still live, still admitted; nobody went back to the waiting room at any point.
    assert scene.state() == "live"
    for party in (host, room):
        assert party.session.state.status == "admitted"
        assert party.session.state.consultation_state == "live"
    room_statuses = {s.status for s in call.history["room"][history_from["room"] :]}
    assert room_statuses <= {"admitted", "reconnecting"}, room_statuses
    assert "waiting" not in statuses_of(call.history["host"][history_from["host"] :], room_id)
    assert media(room).failure(host.id) is None and media(host).failure(room.id) is None
