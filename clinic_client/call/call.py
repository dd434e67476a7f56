"""A mesh call: one :class:`CallPeer` per remote participant (at most two), kept alive.

Who offers
    For each pair of participants the *impolite* side makes offers and the *polite* side
    answers. By default the lower participant id (string order) is impolite, so both
    sides agree without talking. The polite side only ever offers a fresh peer connection
    (recovery), never a renegotiation, because aiortc cannot roll back a local offer.

Glare
    If both sides offer a fresh connection at once, the impolite side ignores the incoming
    offer and the polite side drops its own pending peer connection and answers (the
    "perfect negotiation" rule, with "drop the new peer connection" standing in for
    rollback).

Recovery
    aiortc has no ICE restart and no "disconnected" state, so the call watches each peer:
    a peer that failed, was closed by the other side, or receives no bytes at all for
    ``stall_after_s`` (RTCP alone arrives every ~1 s, so silence means the path is gone) is
    *disconnected*/*failed*. After ``restart_after_s`` (doubling per attempt up to
    ``max_backoff_s``) the impolite side negotiates a brand-new peer connection; the polite
    side waits ``polite_extra_s`` longer for that offer and then offers itself, which covers
    one-way failures. After ``max_attempts`` such attempts without a connection the call
    gives up on that participant: state ``failed`` (``recovery_exhausted``) and
    :meth:`Call.failure` returns the :class:`RecoveryExhausted` error; an offer from the other
    side is still answered. ``restart_peer()`` does the same on demand (e.g. after the signalling
    socket resumed).

Example::

    call = Call(participant_id="room-1", signalling=channel, ice=ice, local_media=media)
    await call.connect_to("clinician-9")              # when the server says they are admitted
    ...                                               # inbound: await call.handle_remote(...)
    print(await call.stats())
    await call.close()
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiortc.mediastreams import MediaStreamTrack

from clinic_client.call.errors import (
    CallError,
    CallFull,
    InvalidCallState,
    InvalidSignal,
    NoIceCandidates,
    RecoveryExhausted,
    UnknownParticipant,
)
from clinic_client.call.fanout import Frame, FrameFanout, pump
from clinic_client.call.ice import IceConfig, parse_remote_candidate
from clinic_client.call.media import LocalMedia, MediaFileRecorder
from clinic_client.call.peer import CallPeer
from clinic_client.call.signalling import (
    SIGNAL_KINDS,
    SignalKind,
    SignallingChannel,
    description_payload,
    parse_description,
    parse_ice,
)
from clinic_client.call.stats import CallStats, StatsSample, bytes_received, summarize

log = logging.getLogger(__name__)

ParticipantState = Literal["new", "connecting", "connected", "disconnected", "failed", "closed"]
MediaKind = Literal["audio", "video"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("audio", "video")


@dataclass(frozen=True)
class RecoveryPolicy:
    """When a peer counts as lost and how fast a fresh peer connection is negotiated."""

    enabled: bool = True
    stall_after_s: float = 5.0
    restart_after_s: float = 2.0
    polite_extra_s: float = 3.0
    connect_timeout_s: float = 15.0
    max_backoff_s: float = 30.0
    check_interval_s: float = 0.5
    # Fresh peer connections tried in a row without connecting before giving up (None: never).
    max_attempts: int | None = 6


@dataclass(frozen=True)
class CallEvent:
    """A participant's connection changed state (``reason`` is a stable snake_case word)."""

    participant_id: str
    state: ParticipantState
    previous: ParticipantState
    connection_id: str | None
    reason: str | None
    at: float


@dataclass(frozen=True)
class ReceivedFrames:
    """Decoded frames received from one participant since they joined the call."""

    video: int
    audio: int


class _RemoteMedia:
    """What we receive from one participant, stable across peer-connection restarts."""

    def __init__(self) -> None:
        self.fanouts: dict[str, FrameFanout] = {
            "audio": FrameFanout("audio", maxsize=50, continuous_pts=True),
            "video": FrameFanout("video", maxsize=8, continuous_pts=True),
        }
        self.counts = {"audio": 0, "video": 0}
        self.latest: dict[str, Frame | None] = {"audio": None, "video": None}

    def counter(self, kind: str) -> Callable[[Frame], None]:
        def on_frame(frame: Frame) -> None:
            self.counts[kind] += 1
            self.latest[kind] = frame

        return on_frame

    def close(self) -> None:
        for fanout in self.fanouts.values():
            fanout.close()


@dataclass
class _Slot:
    participant_id: str
    polite: bool
    created_at: float = field(default_factory=time.monotonic)
    peer: CallPeer | None = None
    state: ParticipantState = "new"
    reason: str | None = None
    bad_since: float | None = None
    attempts: int = 0
    failure: CallError | None = None
    error: CallError | None = None  # why the last attempt failed, until media connects again
    stalled: bool = False
    last_rx_bytes: int = -1
    last_rx_at: float = 0.0
    stats_previous: tuple[str, StatsSample] | None = None
    sinks: set[asyncio.Task[None]] = field(default_factory=set)
    retired: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=32))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    media: _RemoteMedia = field(default_factory=_RemoteMedia)


def new_connection_id() -> str:
    """A fresh random id for one peer connection."""
    return secrets.token_urlsafe(12)


class Call:
    """The media side of one participant in a consultation (see module docstring)."""

    def __init__(
        self,
        *,
        participant_id: str,
        signalling: SignallingChannel,
        ice: IceConfig,
        local_media: LocalMedia | None = None,
        recovery: RecoveryPolicy | None = None,
        max_peers: int = 2,
        on_event: Callable[[CallEvent], None] | None = None,
    ) -> None:
        if not participant_id:
            raise ValueError("participant_id must not be empty")
        self.participant_id = participant_id
        self.recovery = recovery or RecoveryPolicy()
        self.max_peers = max_peers
        self.events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._signalling = signalling
        self._ice = ice
        self._local_media = local_media or LocalMedia()
        self._on_event = on_event
        self._slots: dict[str, _Slot] = {}
        self._local_fanouts: dict[str, FrameFanout] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._negotiations: set[asyncio.Future[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._ensure_started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- public API: participants ------------------------------------------------------

    @property
    def participants(self) -> list[str]:
        """Remote participants currently in the call."""
        return list(self._slots)

    @property
    def ice(self) -> IceConfig:
        """ICE configuration used for the next peer connection."""
        return self._ice

    def update_ice(self, ice: IceConfig) -> None:
        """Use new ICE servers/credentials (e.g. refreshed TURN) for future peer connections."""
        self._ice = ice

    def state(self, participant_id: str) -> ParticipantState:
        """Current connection state with a participant."""
        return self._slot(participant_id).state

    def failure(self, participant_id: str) -> CallError | None:
        """Why the call gave up on a participant (``recovery_exhausted``), or None while it tries."""
        return self._slot(participant_id).failure

    def error(self, participant_id: str) -> CallError | None:
        """Why media with a participant is down: ``recovery_exhausted`` once the call gave up,
        else the error of the last failed attempt (``relay_unavailable`` while the TURN relay
        cannot be reached), kept while the call retries; None once media connects."""
        slot = self._slot(participant_id)
        return slot.failure or slot.error

    def peer(self, participant_id: str) -> CallPeer | None:
        """The current peer connection with a participant (diagnostics and tests)."""
        return self._slot(participant_id).peer

    def is_polite(self, participant_id: str) -> bool:
        """True if we answer (rather than make) offers with this participant."""
        return self._slot(participant_id).polite

    async def connect_to(self, participant_id: str, *, polite: bool | None = None) -> None:
        """Start media with a participant; the impolite side (lower id by default) offers."""
        self._assert_open("connect")
        self._ensure_started()
        slot = self._slots.get(participant_id)
        if slot is None:
            slot = self._add_slot(participant_id, polite)
        elif polite is not None:
            slot.polite = polite
        if slot.peer is not None and slot.peer.state not in ("failed", "closed"):
            return
        if slot.polite:
            self._set_state(slot, "connecting", "awaiting_offer")
            return
        await self._offer_fresh(slot, reason="connect")

    async def handle_remote(self, from_participant_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Process one inbound signalling message (offer, answer or ice) from a participant."""
        if self._closed:
            # Messages still in flight when we hung up are expected, not errors.
            log.debug("dropping %s from %s: call closed", kind, from_participant_id)
            return
        if kind not in SIGNAL_KINDS:
            raise InvalidSignal(f'Unknown signalling message kind "{kind}"')
        if from_participant_id == self.participant_id:
            raise InvalidSignal("Signalling message from ourselves")
        if not isinstance(payload, dict):
            raise InvalidSignal(f"Payload of {kind} must be an object")
        self._ensure_started()
        if kind == "offer":
            await self._guarded(self._handle_offer(from_participant_id, payload))
        elif kind == "answer":
            await self._guarded(self._handle_answer(from_participant_id, payload))
        else:
            await self._guarded(self._handle_ice(from_participant_id, payload))

    async def remove_participant(self, participant_id: str) -> None:
        """Hang up with one participant (they left or were removed)."""
        slot = self._slots.pop(participant_id, None)
        if slot is None:
            raise UnknownParticipant(f'Participant "{participant_id}" is not in the call')
        await self._teardown(slot, reason="removed")

    async def restart_peer(self, participant_id: str) -> None:
        """Replace the peer connection with a freshly negotiated one (network recovery)."""
        self._assert_open("restart a peer")
        slot = self._slot(participant_id)
        await self._offer_fresh(slot, reason="requested")

    async def renegotiate(self, participant_id: str) -> None:
        """New offer/answer on the same peer connection (the polite side restarts instead)."""
        self._assert_open("renegotiate")
        slot = self._slot(participant_id)
        peer = slot.peer
        if slot.polite or peer is None or peer.state != "connected":
            await self._offer_fresh(slot, reason="requested")
            return
        await self._guarded(self._renegotiate(slot, peer))

    async def wait_for_state(
        self, participant_id: str, *states: ParticipantState, timeout: float
    ) -> ParticipantState:
        """Wait until the participant reaches one of ``states``; TimeoutError names the state."""
        deadline = time.monotonic() + timeout
        while True:
            slot = self._slots.get(participant_id)
            current: ParticipantState = slot.state if slot else "closed"
            if current in states:
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f'Participant "{participant_id}" still in state "{current}" '
                    f"after {timeout} s (wanted {', '.join(states)})"
                )
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, 0.5))

    # --- public API: media -------------------------------------------------------------

    def received_frames(self, participant_id: str) -> ReceivedFrames:
        """Frames decoded from a participant so far (video, audio)."""
        counts = self._slot(participant_id).media.counts
        return ReceivedFrames(video=counts["video"], audio=counts["audio"])

    def latest_frame(self, participant_id: str, kind: MediaKind) -> Frame | None:
        """The most recent decoded frame of a kind from a participant."""
        return self._slot(participant_id).media.latest[kind]

    def remote_track(self, participant_id: str, kind: MediaKind) -> MediaStreamTrack:
        """A new consumer of a participant's audio or video that survives restarts."""
        return self._slot(participant_id).media.fanouts[kind].subscribe()

    async def record(self, participant_id: str, path: str | Path) -> MediaFileRecorder:
        """Start recording a participant's media to a file (.mp4, .mkv, .webm, .wav)."""
        audio = self.remote_track(participant_id, "audio")
        video = self.remote_track(participant_id, "video")
        try:
            recorder = MediaFileRecorder(path, audio=audio, video=video)
        except ValueError:
            audio.stop()
            video.stop()
            raise
        if "video" not in recorder.kinds:
            video.stop()
        await recorder.start()
        return recorder

    async def stats(self) -> dict[str, CallStats]:
        """Quality figures per participant; rates cover the time since the previous call."""
        result: dict[str, CallStats] = {}
        now = time.monotonic()
        for pid, slot in list(self._slots.items()):
            peer = slot.peer
            counts = slot.media.counts
            if peer is None or peer.state == "closed":
                result[pid] = CallStats(
                    participant_id=pid,
                    state=slot.state,
                    connection_id=peer.connection_id if peer else None,
                    rtt_ms=None,
                    jitter_ms=None,
                    packet_loss_pct=None,
                    bitrate_in_kbps=None,
                    bitrate_out_kbps=None,
                    video_frames_received=counts["video"],
                    audio_frames_received=counts["audio"],
                    local_candidate_type=None,
                    remote_candidate_type=None,
                )
                continue
            previous = None
            if slot.stats_previous and slot.stats_previous[0] == peer.connection_id:
                previous = slot.stats_previous[1]
            figures = summarize(
                await peer.get_stats(),
                previous=previous,
                started_at=peer.connected_at or peer.created_at,
                clock_rates=peer.clock_rates(),
                now=now,
            )
            slot.stats_previous = (peer.connection_id, figures.sample)
            pair = peer.selected_pair()
            result[pid] = CallStats(
                participant_id=pid,
                state=slot.state,
                connection_id=peer.connection_id,
                rtt_ms=figures.rtt_ms,
                jitter_ms=figures.jitter_ms,
                packet_loss_pct=figures.packet_loss_pct,
                bitrate_in_kbps=figures.bitrate_in_kbps,
                bitrate_out_kbps=figures.bitrate_out_kbps,
                video_frames_received=counts["video"],
                audio_frames_received=counts["audio"],
                local_candidate_type=pair.local_type if pair else None,
                remote_candidate_type=pair.remote_type if pair else None,
            )
        return result

    async def close(self) -> None:
        """Hang up with everyone and stop every task the call started."""
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        # Let in-flight negotiations finish (bounded by ICE gathering) before closing peers.
        if self._negotiations:
            await asyncio.wait(set(self._negotiations))
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            await self._teardown(slot, reason="call_closed")
        for fanout in self._local_fanouts.values():
            fanout.close()
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- signalling in -----------------------------------------------------------------

    async def _handle_offer(self, from_id: str, payload: dict[str, Any]) -> None:
        offer = parse_description("offer", payload)
        slot = self._slots.get(from_id) or self._add_slot(from_id, None)
        answer: tuple[CallPeer, str] | None = None
        async with slot.lock:
            peer = slot.peer
            if offer.connection_id in slot.retired:
                log.info("ignoring offer for retired connection from %s", from_id)
                return
            if peer is not None and peer.connection_id == offer.connection_id:
                if peer.state in ("failed", "closed") or peer.signaling_state != "stable":
                    log.info(
                        "ignoring renegotiation offer from %s in signaling state %s",
                        from_id,
                        peer.signaling_state,
                    )
                    return
                answer = (peer, await peer.accept_offer(offer.sdp))
            else:
                if (
                    peer is not None
                    and not slot.polite
                    and peer.signaling_state == "have-local-offer"
                    and time.monotonic() - peer.created_at < self.recovery.connect_timeout_s
                ):
                    log.info("glare with %s: keeping our own offer (impolite side)", from_id)
                    return
                fresh = self._new_peer(slot, offer.connection_id)
                old = self._install(slot, fresh, reason="remote_offer")
                try:
                    answer = (fresh, await fresh.accept_offer(offer.sdp))
                except NoIceCandidates as exc:
                    log.warning("cannot answer %s: %s", from_id, exc.code)
                    self._refresh_state(slot)
                finally:
                    if old is not None:
                        await old.close()
        if answer is not None:
            peer, sdp = answer
            await self._send(slot, "answer", description_payload("answer", sdp, peer.connection_id))

    async def _handle_answer(self, from_id: str, payload: dict[str, Any]) -> None:
        answer = parse_description("answer", payload)
        slot = self._slot(from_id)
        async with slot.lock:
            peer = slot.peer
            if (
                peer is None
                or peer.connection_id != answer.connection_id
                or peer.signaling_state != "have-local-offer"
            ):
                log.info("ignoring stale answer from %s", from_id)
                return
            await peer.accept_answer(answer.sdp)

    async def _handle_ice(self, from_id: str, payload: dict[str, Any]) -> None:
        ice = parse_ice(payload)
        slot = self._slot(from_id)
        candidate = (
            parse_remote_candidate(ice.candidate, sdp_mid=ice.sdp_mid, sdp_mline_index=ice.sdp_mline_index)
            if ice.candidate
            else None
        )
        async with slot.lock:
            peer = slot.peer
            if peer is None or (ice.connection_id is not None and ice.connection_id != peer.connection_id):
                log.info("ignoring ICE candidate for another connection from %s", from_id)
                return
            await peer.add_remote_candidate(candidate)

    # --- negotiation out ---------------------------------------------------------------

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a negotiation step so that cancelling the caller cannot interrupt it.

        aioice leaks sockets if candidate gathering is cancelled half way, and a peer left
        half-negotiated is worse than one that finishes; close() waits for these steps.
        """
        task = asyncio.ensure_future(coro)
        self._negotiations.add(task)
        task.add_done_callback(self._negotiation_done)
        await asyncio.shield(task)

    def _negotiation_done(self, task: asyncio.Future[None]) -> None:
        self._negotiations.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Marks the exception retrieved; the awaiting caller (if any) still gets it.
            log.debug("negotiation step failed: %r", task.exception())

    async def _renegotiate(self, slot: _Slot, peer: CallPeer) -> None:
        async with slot.lock:
            if peer is not slot.peer or peer.signaling_state != "stable":
                raise InvalidCallState(f'Cannot renegotiate in signaling state "{peer.signaling_state}"')
            sdp = await peer.create_offer()
        await self._send(slot, "offer", description_payload("offer", sdp, peer.connection_id))

    async def _offer_fresh(self, slot: _Slot, *, reason: str) -> None:
        """Replace the slot's peer with a new one and send its offer."""
        await self._guarded(self._offer_fresh_now(slot, reason=reason))

    async def _offer_fresh_now(self, slot: _Slot, *, reason: str) -> None:
        offer: tuple[CallPeer, str] | None = None
        async with slot.lock:
            if self._closed or self._slots.get(slot.participant_id) is not slot:
                return
            fresh = self._new_peer(slot, new_connection_id())
            old = self._install(slot, fresh, reason=reason)
            try:
                offer = (fresh, await fresh.create_offer())
            except NoIceCandidates as exc:
                log.warning("cannot offer to %s: %s", slot.participant_id, exc.code)
                self._refresh_state(slot)
            finally:
                if old is not None:
                    await old.close()
        if offer is not None:
            peer, sdp = offer
            await self._send(slot, "offer", description_payload("offer", sdp, peer.connection_id))

    async def _send(self, slot: _Slot, kind: SignalKind, payload: dict[str, Any]) -> None:
        await self._signalling.send(slot.participant_id, kind, payload)

    # --- peers -------------------------------------------------------------------------

    def _add_slot(self, participant_id: str, polite: bool | None) -> _Slot:
        if not participant_id or participant_id == self.participant_id:
            raise InvalidSignal("A call cannot connect to itself or to an empty id")
        if len(self._slots) >= self.max_peers:
            raise CallFull(f"Cannot add a participant: the call already has {len(self._slots)} peers")
        if polite is None:
            polite = self.participant_id > participant_id
        slot = _Slot(participant_id=participant_id, polite=polite)
        self._slots[participant_id] = slot
        return slot

    def _new_peer(self, slot: _Slot, connection_id: str) -> CallPeer:
        return CallPeer(
            remote_id=slot.participant_id,
            connection_id=connection_id,
            ice=self._ice,
            audio=self._local_track("audio"),
            video=self._local_track("video"),
            on_track=self._on_peer_track,
            on_state_change=self._on_peer_state,
        )

    def _install(self, slot: _Slot, peer: CallPeer, *, reason: str) -> CallPeer | None:
        """Make ``peer`` current; returns the previous peer, for the caller to close."""
        old = slot.peer
        if old is not None:
            slot.retired.append(old.connection_id)
        for task in slot.sinks:
            task.cancel()
        slot.sinks = set()
        slot.peer = peer
        slot.stalled = False
        slot.last_rx_bytes = -1
        slot.last_rx_at = time.monotonic()
        slot.bad_since = None
        self._set_state(slot, "connecting", reason)
        return old

    def _on_peer_track(self, peer: CallPeer, track: MediaStreamTrack) -> None:
        slot = self._slots.get(peer.remote_id)
        if slot is None or slot.peer is not peer or track.kind not in MEDIA_KINDS:
            return
        task = asyncio.ensure_future(
            pump(
                track,
                slot.media.fanouts[track.kind],
                generation=peer.connection_id,
                on_frame=slot.media.counter(track.kind),
            )
        )
        slot.sinks.add(task)
        task.add_done_callback(slot.sinks.discard)

    def _on_peer_state(self, peer: CallPeer) -> None:
        slot = self._slots.get(peer.remote_id)
        if slot is not None and slot.peer is peer:
            self._refresh_state(slot)

    def _refresh_state(self, slot: _Slot) -> None:
        peer = slot.peer
        if peer is None:
            return
        state = peer.state
        if state == "connected":
            if slot.stalled:
                self._set_state(slot, "disconnected", "stalled")
            else:
                self._set_state(slot, "connected", None)
        elif state in ("new", "connecting"):
            if peer.connected_at is not None:
                # aiortc falls back to "connecting" when a transport of a live peer dies.
                self._set_state(slot, "disconnected", "transport_lost")
            else:
                self._set_state(slot, "connecting", slot.reason)
        elif state == "failed":
            if peer.failure_error is not None:
                slot.error = peer.failure_error  # before the event, so listeners see it
            self._set_state(slot, "failed", peer.failure_reason or "ice_failed")
        elif not peer.closed_locally:
            self._set_state(slot, "failed", "closed_unexpectedly")

    def _set_state(
        self, slot: _Slot, state: ParticipantState, reason: str | None, *, announce_same: bool = False
    ) -> None:
        if state == "failed" and slot.failure is not None:
            reason = slot.failure.code  # given up: that stays the reason until it connects
        if state == "connected":
            slot.error = None
        if state == slot.state and reason == slot.reason:
            return
        previous = slot.state
        slot.state = state
        slot.reason = reason
        if state == previous and not announce_same:
            return
        peer = slot.peer
        event = CallEvent(
            participant_id=slot.participant_id,
            state=state,
            previous=previous,
            connection_id=peer.connection_id if peer else None,
            reason=reason,
            at=time.monotonic(),
        )
        log.info("participant %s: %s -> %s (%s)", slot.participant_id, previous, state, reason or "-")
        self.events.put_nowait(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("on_event callback failed")
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _teardown(self, slot: _Slot, *, reason: str) -> None:
        async with slot.lock:
            for task in slot.sinks:
                task.cancel()
            peer, slot.peer = slot.peer, None
            if peer is not None:
                await peer.close()
            slot.media.close()
            self._set_state(slot, "closed", reason)

    # --- local media -------------------------------------------------------------------

    def _local_track(self, kind: MediaKind) -> MediaStreamTrack | None:
        fanout = self._local_fanouts.get(kind)
        return fanout.subscribe() if fanout is not None else None

    def _ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        sources = {"audio": self._local_media.audio, "video": self._local_media.video}
        for kind, source in sources.items():
            if source is None:
                continue
            # Small queues: a live sender wants the newest frame, not a backlog.
            fanout = FrameFanout(kind, maxsize=2 if kind == "video" else 5)
            self._local_fanouts[kind] = fanout
            self._spawn(pump(source, fanout))
        self._watchdog = asyncio.ensure_future(self._supervise_forever())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- supervision -------------------------------------------------------------------

    async def _supervise_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.recovery.check_interval_s)
            for slot in list(self._slots.values()):
                try:
                    await self._supervise(slot)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("supervising %s failed", slot.participant_id)

    async def _supervise(self, slot: _Slot) -> None:
        if slot.lock.locked():
            return  # a negotiation is in progress
        now = time.monotonic()
        policy = self.recovery
        peer = slot.peer
        if peer is not None:
            if peer.state in ("new", "connecting") and now - peer.created_at > policy.connect_timeout_s:
                peer.fail("connect_timeout")
            if peer.state == "connected":
                received = bytes_received(await peer.get_stats())
                if received != slot.last_rx_bytes:
                    slot.last_rx_bytes = received
                    slot.last_rx_at = now
                    slot.stalled = False
                elif now - slot.last_rx_at > policy.stall_after_s:
                    slot.stalled = True
            self._refresh_state(slot)
        if not policy.enabled or slot.peer is not peer:
            return
        waited_too_long = peer is None and now - slot.created_at > policy.connect_timeout_s
        if slot.state not in ("failed", "disconnected") and not waited_too_long:
            if slot.state == "connected":
                slot.attempts = 0
                slot.bad_since = None
                slot.failure = None
            return
        if slot.failure is not None:
            return  # given up; only an offer from the other side can bring it back
        if policy.max_attempts is not None and slot.attempts >= policy.max_attempts:
            self._give_up(slot)
            return
        if slot.bad_since is None:
            slot.bad_since = now
        delay = min(policy.restart_after_s * 2**slot.attempts, policy.max_backoff_s)
        if slot.polite:
            delay += policy.polite_extra_s
        if now - slot.bad_since < delay:
            return
        slot.attempts += 1
        slot.bad_since = None
        log.info(
            "recovering %s (attempt %d, %s)",
            slot.participant_id,
            slot.attempts,
            slot.reason or "no offer",
        )
        await self._offer_fresh(slot, reason="recovering")

    def _give_up(self, slot: _Slot) -> None:
        last = slot.reason or "no_offer"
        slot.failure = RecoveryExhausted(
            f'Cannot connect to "{slot.participant_id}": {slot.attempts} attempts failed (last: {last})',
            last_reason=last,
            attempts=slot.attempts,
        )
        log.error("%s", slot.failure)
        # Announced even when already failed (for another reason): listeners learn it is final.
        self._set_state(slot, "failed", RecoveryExhausted.code, announce_same=True)

    # --- helpers -----------------------------------------------------------------------

    def _slot(self, participant_id: str) -> _Slot:
        slot = self._slots.get(participant_id)
        if slot is None:
            raise UnknownParticipant(f'Participant "{participant_id}" is not in the call')
        return slot

    def _assert_open(self, action: str) -> None:
        if self._closed:
            raise InvalidCallState(f'Cannot {action} in call state "closed"')
