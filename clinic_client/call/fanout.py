"""Hand each frame of one live source to several consumers, each with a bounded queue.

A live call must never let a slow consumer (an encoder, a recorder, a UI) hold up the
others or grow memory without bound, so every subscriber has its own small queue that drops
its oldest frame when full. Unlike aiortc's ``MediaRelay`` the reading task belongs to the
call, so closing the call really stops it.

For remote media the source changes on every recovery (a new peer connection brings new
tracks); :class:`FrameFanout` rewrites timestamps so that consumers such as a recorder see
one continuous, monotonic stream per participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

Frame = av.AudioFrame | av.VideoFrame

# Gap inserted between the last frame of one source and the first of the next.
_VIDEO_STEP = 3000  # 1/30 s at 90 kHz


class FanoutTrack(MediaStreamTrack):
    """One consumer's view of a :class:`FrameFanout`."""

    def __init__(self, fanout: FrameFanout, kind: str, maxsize: int) -> None:
        super().__init__()
        self.kind = kind
        self._fanout: FrameFanout | None = fanout
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def _offer(self, frame: Frame | None) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self.dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> Frame:
        """Next frame; raises ``MediaStreamError`` once the source or this track ended."""
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        """Unsubscribe; a pending ``recv`` wakes up and raises ``MediaStreamError``."""
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            fanout._unsubscribe(self)
        if self.readyState == "live":
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
        super().stop()


class FrameFanout:
    """Distributes frames from one (replaceable) source to any number of subscribers."""

    def __init__(self, kind: str, *, maxsize: int = 8, continuous_pts: bool = False) -> None:
        self.kind = kind
        self._maxsize = maxsize
        self._subscribers: set[FanoutTrack] = set()
        self._closed = False
        self._continuous = continuous_pts
        self._generation: object = None
        self._offset = 0
        self._last_pts: int | None = None
        self._time_base: Fraction | None = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def subscribe(self) -> FanoutTrack:
        """A new consumer track; it ends when the fanout closes or when it is stopped."""
        track = FanoutTrack(self, self.kind, self._maxsize)
        if self._closed:
            track.stop()
        else:
            self._subscribers.add(track)
        return track

    def publish(self, frame: Frame, *, generation: object = None) -> None:
        """Deliver a frame to every subscriber (dropping their oldest frame if full)."""
        if self._closed:
            return
        if self._continuous:
            self._retime(frame, generation)
        for track in list(self._subscribers):
            track._offer(frame)

    def close(self) -> None:
        """End the stream for every subscriber."""
        self._closed = True
        for track in list(self._subscribers):
            track.stop()
        self._subscribers.clear()

    def _unsubscribe(self, track: FanoutTrack) -> None:
        self._subscribers.discard(track)

    def _retime(self, frame: Frame, generation: object) -> None:
        # Each new peer connection starts its RTP clock at a random point; shift its pts so
        # the stream seen by consumers continues right after the previous source's last frame.
        if frame.pts is None:
            return
        step = frame.samples if isinstance(frame, av.AudioFrame) else _VIDEO_STEP
        if generation != self._generation or frame.time_base != self._time_base:
            self._generation = generation
            self._time_base = frame.time_base
            start = 0 if self._last_pts is None else self._last_pts + step
            self._offset = start - frame.pts
        pts = frame.pts + self._offset
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame.pts = pts
        self._last_pts = pts


async def pump(
    source: MediaStreamTrack,
    fanout: FrameFanout,
    *,
    generation: object = None,
    on_frame: Callable[[Frame], None] | None = None,
) -> None:
    """Read ``source`` until it ends, publishing every frame (runs as a task)."""
    while True:
        try:
            frame = await source.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame | av.VideoFrame):
            continue
        if on_frame is not None:
            on_frame(frame)
        fanout.publish(frame, generation=generation)
