"""In-memory signalling between :class:`Call` objects in one event loop, and call helpers.

Behaves like the real relay where it matters: messages are JSON round-tripped (so only
wire-safe payloads pass), delivered asynchronously (never re-entrantly inside ``send``)
and in order per receiver. Errors raised by ``handle_remote`` are kept for the test to
assert on instead of vanishing in a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from clinic_client.call import (
    Call,
    FrameMarker,
    IceConfig,
    LocalMedia,
    RecoveryPolicy,
    SignalKind,
    SignallingChannel,
    read_frame_marker,
    synthetic_media,
)


@dataclass(frozen=True)
class Delivery:
    """One message as it crossed the loopback."""

    sender: str
    receiver: str
    kind: str
    payload: dict[str, Any]


class LoopbackNetwork:
    """Routes signalling between the calls attached to it."""

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.log: list[Delivery] = []
        self.errors: list[BaseException] = []
        self.blocked: set[str] = set()

    def channel(self, participant_id: str) -> LoopbackChannel:
        """The SignallingChannel a participant's Call sends through."""
        return LoopbackChannel(self, participant_id)

    def attach(self, call: Call) -> None:
        """Start delivering messages addressed to this call."""
        queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._calls[call.participant_id] = call
        self._queues[call.participant_id] = queue
        self._tasks.append(asyncio.ensure_future(self._deliver(call, queue)))

    def enqueue(self, sender: str, receiver: str, kind: str, payload: dict[str, Any]) -> None:
        wire = json.loads(json.dumps(payload))
        delivery = Delivery(sender=sender, receiver=receiver, kind=kind, payload=wire)
        self.log.append(delivery)
        if receiver in self.blocked or sender in self.blocked:
            return
        queue = self._queues.get(receiver)
        if queue is None:
            raise LookupError(f"no participant {receiver!r} on the loopback")
        queue.put_nowait(delivery)

    def sent(self, kind: str, *, sender: str | None = None) -> list[Delivery]:
        """Messages of a kind (optionally from one sender) seen so far."""
        return [d for d in self.log if d.kind == kind and (sender is None or d.sender == sender)]

    async def _deliver(self, call: Call, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                await call.handle_remote(delivery.sender, delivery.kind, delivery.payload)
            except Exception as exc:  # kept for the test's assertion
                self.errors.append(exc)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


class LoopbackChannel:
    """One participant's end of the loopback."""

    def __init__(self, network: LoopbackNetwork, participant_id: str) -> None:
        self._network = network
        self.participant_id = participant_id

    async def send(self, to_participant_id: str, kind: SignalKind, payload: dict[str, Any]) -> None:
        self._network.enqueue(self.participant_id, to_participant_id, kind, payload)


class CallHarness:
    """Creates calls wired to one loopback network and closes everything afterwards."""

    def __init__(self) -> None:
        self.network = LoopbackNetwork()
        self._calls: list[Call] = []
        self._media: list[LocalMedia] = []

    def call(
        self,
        participant_id: str,
        *,
        ice: IceConfig | None = None,
        source_tag: int = 0,
        recovery: RecoveryPolicy | None = None,
        video: bool = True,
        signalling: SignallingChannel | None = None,
    ) -> Call:
        """A call for participant_id sending marked video (tag) and a tone."""
        media = synthetic_media(source_tag=source_tag, video=video)
        self._media.append(media)
        call = Call(
            participant_id=participant_id,
            signalling=signalling or self.network.channel(participant_id),
            ice=ice or IceConfig(),
            local_media=media,
            recovery=recovery,
        )
        self.network.attach(call)
        self._calls.append(call)
        return call

    async def close(self) -> None:
        await self.network.close()
        for call in self._calls:
            await call.close()
        for media in self._media:
            media.stop()


async def eventually(
    predicate: Callable[[], bool], *, timeout: float, message: Callable[[], str] | str
) -> None:
    """Wait until predicate() is true; fail with message if it is not within timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout} s)")
        await asyncio.sleep(0.05)


async def connected_pair(a: Call, b: Call, *, timeout: float = 10.0) -> None:
    """Connect a and b (both sides call connect_to) and wait until both see "connected"."""
    await a.connect_to(b.participant_id)
    await b.connect_to(a.participant_id)
    await a.wait_for_state(b.participant_id, "connected", timeout=timeout)
    await b.wait_for_state(a.participant_id, "connected", timeout=timeout)


async def fresh_video(call: Call, remote_id: str, *, tag: int, timeout: float = 5.0) -> int:
    """Wait until call sees newer marked frames from remote_id; returns the latest counter.

    Proves frames are live: the counter drawn into the picture must increase.
    """
    await eventually(
        lambda: _marker(call, remote_id) is not None,
        timeout=timeout,
        message=lambda: f"{call.participant_id} got no readable video from {remote_id}",
    )
    start = _marker(call, remote_id)
    assert start is not None
    assert start.source_tag == tag, f"video from {remote_id} carries tag {start.source_tag}"
    await eventually(
        lambda: (m := _marker(call, remote_id)) is not None and m.counter > start.counter,
        timeout=timeout,
        message=lambda: (
            f"video from {remote_id} at {call.participant_id} is frozen at "
            f"frame {start.counter} ({call.received_frames(remote_id)})"
        ),
    )
    latest = _marker(call, remote_id)
    assert latest is not None and latest.source_tag == tag
    return latest.counter


def _marker(call: Call, remote_id: str) -> FrameMarker | None:
    frame = call.latest_frame(remote_id, "video")
    if not isinstance(frame, av.VideoFrame):
        return None
    return read_frame_marker(frame)
