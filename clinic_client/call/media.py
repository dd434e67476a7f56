"""Media sources and sinks for a call: synthetic test tracks, real devices/files, recording.

Synthetic sources exist so that a test (or a pre-call "check my setup" screen) can prove
that media really flows: every video frame carries a machine-readable marker (a 16-bit
frame counter, an 8-bit source tag and a checksum, drawn as large black/white blocks that
survive VP8 compression) above a moving bar, and the audio track is a steady sine tone.
The receiver reads the marker back with :func:`read_frame_marker`; a counter that keeps
increasing proves frames are fresh, not a frozen last image.

Example::

    media = synthetic_media(source_tag=1)          # or open_devices() / open_media("a.mp4")
    async with Call(participant_id="room-1", signalling=channel, ice=ice,
                    local_media=media) as call:
        ...
    media.stop()
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import av
from aiortc.contrib.media import MediaPlayer, MediaRecorder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

# Marker layout: two bands of 16 blocks each at the top of the frame.
MARKER_BITS_PER_ROW = 16
MARKER_BAND_HEIGHT = 32
MARKER_TOP = 8
MARKER_GAP = 8
_WHITE = 235  # studio-range luma: what encoders expect for white/black
_BLACK = 16
_BACKGROUND = 90
_BAR = 200
_CHECK_SALT = 0xA5


@dataclass(frozen=True)
class FrameMarker:
    """What a synthetic video frame carries: who sent it and its sequence number."""

    source_tag: int
    counter: int


def _checksum(counter: int, source_tag: int) -> int:
    return ((counter >> 8) ^ (counter & 0xFF) ^ source_tag ^ _CHECK_SALT) & 0xFF


def _band_row(bits: int, width: int, line_size: int) -> bytes:
    """One luma row of a marker band: 16 blocks, MSB first, white for 1, black for 0."""
    block = width // MARKER_BITS_PER_ROW
    row = bytearray([_BACKGROUND]) * line_size
    for i in range(MARKER_BITS_PER_ROW):
        bit = (bits >> (MARKER_BITS_PER_ROW - 1 - i)) & 1
        value = _WHITE if bit else _BLACK
        row[i * block : (i + 1) * block] = bytes([value]) * block
    return bytes(row)


def _band_tops() -> tuple[int, int]:
    first = MARKER_TOP
    second = MARKER_TOP + MARKER_BAND_HEIGHT + MARKER_GAP
    return first, second


def render_marked_frame(
    *, counter: int, source_tag: int, width: int = 320, height: int = 240
) -> av.VideoFrame:
    """A yuv420p frame showing the marker for (counter, source_tag) and a moving bar."""
    if width < 2 * MARKER_BITS_PER_ROW or width % 2 or height % 2:
        raise ValueError("width must be even and >= 32, height even")
    first_top, second_top = _band_tops()
    if height < second_top + MARKER_BAND_HEIGHT + 16:
        raise ValueError(f"height must be at least {second_top + MARKER_BAND_HEIGHT + 16}")
    counter &= 0xFFFF
    source_tag &= 0xFF
    frame = av.VideoFrame(width=width, height=height, format="yuv420p")
    luma = frame.planes[0]
    line = luma.line_size
    background = bytes([_BACKGROUND]) * line
    counter_row = _band_row(counter, width, line)
    tag_row = _band_row((source_tag << 8) | _checksum(counter, source_tag), width, line)
    bar_width = max(8, width // 12)
    bar_x = (counter * 6) % (width - bar_width)
    bar_row = bytearray(background)
    bar_row[bar_x : bar_x + bar_width] = bytes([_BAR]) * bar_width
    rows: list[bytes] = []
    for y in range(height):
        if first_top <= y < first_top + MARKER_BAND_HEIGHT:
            rows.append(counter_row)
        elif second_top <= y < second_top + MARKER_BAND_HEIGHT:
            rows.append(tag_row)
        elif y >= second_top + MARKER_BAND_HEIGHT + MARKER_GAP:
            rows.append(bytes(bar_row))
        else:
            rows.append(background)
    luma.update(b"".join(rows))
    for chroma in frame.planes[1:]:
        chroma.update(bytes([128]) * chroma.buffer_size)
    return frame


def _read_band(luma: memoryview, line: int, width: int, top: int) -> int:
    block = width // MARKER_BITS_PER_ROW
    bits = 0
    for i in range(MARKER_BITS_PER_ROW):
        # Average a small patch at the block centre: robust to ringing at block edges.
        cx = i * block + block // 2
        cy = top + MARKER_BAND_HEIGHT // 2
        total = 0
        count = 0
        for y in range(cy - 3, cy + 3):
            start = y * line + cx - 2
            for value in luma[start : start + 4]:
                total += value
                count += 1
        bits = (bits << 1) | (1 if total / count > 128 else 0)
    return bits


def read_frame_marker(frame: av.VideoFrame) -> FrameMarker | None:
    """Read the marker drawn by :func:`render_marked_frame`; None if absent or unreadable."""
    first_top, second_top = _band_tops()
    if frame.height < second_top + MARKER_BAND_HEIGHT or frame.width < 2 * MARKER_BITS_PER_ROW:
        return None
    if frame.format.name not in {"yuv420p", "yuvj420p"}:
        frame = frame.reformat(format="yuv420p")
    luma_plane = frame.planes[0]
    luma = memoryview(luma_plane).cast("B")
    line = luma_plane.line_size
    counter = _read_band(luma, line, frame.width, first_top)
    tag_and_check = _read_band(luma, line, frame.width, second_top)
    source_tag, check = tag_and_check >> 8, tag_and_check & 0xFF
    if check != _checksum(counter, source_tag):
        return None
    return FrameMarker(source_tag=source_tag, counter=counter)


def audio_level(frame: av.AudioFrame) -> float:
    """Root-mean-square level of an audio frame, 0.0 (silence) to 1.0 (full scale)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=frame.sample_rate)
    samples = array("h")
    for converted in resampler.resample(frame):
        data = bytes(converted.planes[0])[: converted.samples * 2]
        samples.frombytes(data)
    if not samples:
        return 0.0
    mean_square = sum(s * s for s in samples) / len(samples)
    return math.sqrt(mean_square) / 32768.0


class SyntheticVideoTrack(MediaStreamTrack):
    """A live video source whose frames carry a counter and source tag (see module doc)."""

    kind = "video"

    def __init__(self, *, source_tag: int = 0, fps: int = 15, width: int = 320, height: int = 240) -> None:
        super().__init__()
        if not 0 <= source_tag <= 0xFF:
            raise ValueError("source_tag must fit in a byte")
        if not 1 <= fps <= 60:
            raise ValueError("fps must be between 1 and 60")
        self.source_tag = source_tag
        self.fps = fps
        self.width = width
        self.height = height
        self.frames_sent = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        """Next frame, paced in real time at ``fps``."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self.frames_sent / self.fps
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = render_marked_frame(
            counter=self.frames_sent,
            source_tag=self.source_tag,
            width=self.width,
            height=self.height,
        )
        frame.pts = self.frames_sent * VIDEO_CLOCK_RATE // self.fps
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A live audio source playing a continuous sine tone (mono, 16-bit)."""

    kind = "audio"

    def __init__(
        self,
        *,
        frequency_hz: float = 440.0,
        amplitude: float = 0.3,
        sample_rate: int = 48_000,
        ptime_s: float = 0.020,
    ) -> None:
        super().__init__()
        if not 0.0 < amplitude <= 1.0:
            raise ValueError("amplitude must be in (0, 1]")
        self.frequency_hz = frequency_hz
        self.amplitude = amplitude
        self.sample_rate = sample_rate
        self.samples_per_frame = int(sample_rate * ptime_s)
        self.samples_sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        """Next 20 ms of tone, paced in real time."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self.samples_sent / self.sample_rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        step = 2 * math.pi * self.frequency_hz / self.sample_rate
        peak = 32767 * self.amplitude
        first = self.samples_sent
        samples = array(
            "h",
            (int(peak * math.sin(step * (first + i))) for i in range(self.samples_per_frame)),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples_per_frame)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = self.sample_rate
        frame.pts = first
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self.samples_sent += self.samples_per_frame
        return frame


@dataclass
class LocalMedia:
    """The local tracks a call sends; either may be None (receive-only for that kind)."""

    audio: MediaStreamTrack | None = None
    video: MediaStreamTrack | None = None
    # Keeps a MediaPlayer alive as long as its tracks are used.
    player: MediaPlayer | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the tracks (and release the camera, microphone or file)."""
        for track in (self.audio, self.video):
            if track is not None:
                track.stop()


def synthetic_media(
    *, source_tag: int = 0, fps: int = 15, tone_hz: float = 440.0, video: bool = True
) -> LocalMedia:
    """Marked test video plus a tone: proves media flows without camera or microphone."""
    return LocalMedia(
        audio=ToneAudioTrack(frequency_hz=tone_hz),
        video=SyntheticVideoTrack(source_tag=source_tag, fps=fps) if video else None,
    )


def open_media(
    source: str | Path,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
    loop: bool = False,
) -> LocalMedia:
    """Audio/video from a file, URL or capture device via FFmpeg (aiortc ``MediaPlayer``).

    Examples: ``open_media("greeting.mp4", loop=True)``,
    ``open_media("/dev/video0", format="v4l2", options={"video_size": "640x480"})``,
    ``open_media("default", format="pulse")`` (microphone only).
    """
    player = MediaPlayer(str(source), format=format, options=options, loop=loop)
    return LocalMedia(audio=player.audio, video=player.video, player=player)


def open_devices(
    *,
    video_device: str | None = "/dev/video0",
    audio_device: str | None = "default",
    video_format: str = "v4l2",
    audio_format: str = "pulse",
    video_size: str = "640x480",
    framerate: str = "15",
) -> LocalMedia:
    """The laptop's camera and microphone (Linux defaults: V4L2 camera, PulseAudio mic)."""
    audio: MediaStreamTrack | None = None
    video: MediaStreamTrack | None = None
    player: MediaPlayer | None = None
    if video_device is not None:
        camera = MediaPlayer(
            video_device,
            format=video_format,
            options={"video_size": video_size, "framerate": framerate},
        )
        video, player = camera.video, camera
    if audio_device is not None:
        microphone = MediaPlayer(audio_device, format=audio_format)
        audio = microphone.audio
        player = player or microphone
    return LocalMedia(audio=audio, video=video, player=player)


# Containers that can only hold audio: a video track is not added to them.
_AUDIO_ONLY_SUFFIXES = {".wav", ".mp3", ".ogg", ".opus"}
RECORDING_SUFFIXES = {".mp4", ".mkv", ".webm"} | _AUDIO_ONLY_SUFFIXES


class MediaFileRecorder:
    """Writes audio and/or video tracks to a file; the container follows the suffix.

    ``.mp4``/``.mkv`` get H.264 + AAC, ``.webm`` VP8 + Opus, ``.wav`` PCM audio only.
    Give it tracks that no one else consumes (e.g. ``Call.remote_track(...)``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in RECORDING_SUFFIXES:
            raise ValueError(f'Cannot record to "{suffix}"; use one of {sorted(RECORDING_SUFFIXES)}')
        self._tracks: list[MediaStreamTrack] = []
        if audio is not None:
            self._tracks.append(audio)
        if video is not None and suffix not in _AUDIO_ONLY_SUFFIXES:
            self._tracks.append(video)
        if not self._tracks:
            raise ValueError(f'Nothing to record into "{suffix}": no suitable track given')
        self._recorder: MediaRecorder | None = MediaRecorder(str(self.path))
        for track in self._tracks:
            self._recorder.addTrack(track)
        self._started = False

    @property
    def kinds(self) -> list[str]:
        """The kinds of track being recorded ("audio", "video")."""
        return [track.kind for track in self._tracks]

    async def start(self) -> None:
        """Start writing."""
        if self._recorder is None:
            raise RuntimeError("Cannot start a recorder in state stopped")
        if not self._started:
            self._started = True
            await self._recorder.start()

    async def stop(self) -> None:
        """Flush encoders, close the file and stop the recorded tracks."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            await recorder.stop()
        for track in self._tracks:
            track.stop()
