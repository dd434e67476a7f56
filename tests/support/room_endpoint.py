"""A room endpoint for end-to-end tests: the SDK (aiortc) with synthetic media and a simulated
compliant posture, joining the consultation booked for its device and waiting to be admitted.

It does what the room agent in a prison healthcare room does, with nothing to operate: asks
the server for the join token of the consultation booked for it now (its posture token and
a device-key proof are the credential), asking again while nothing is booked yet; connects
with :class:`~clinic_client.session.ConsultationSession`; waits in the waiting room until the
host admits it; then sends marked synthetic video and a tone and counts the video frames it
decodes from the other side (the clinician's browser in the console tests).

Simulated posture is accepted by development-mode servers only
(``make_scene(environment=Environment.DEVELOPMENT)``); pass ``source=`` to report other facts.

Example::

    async with running_room(server_url, "room-01", key) as room:
        await room.join()                         # waits until a consultation is booked
        await room.wait_admitted()                # the clinician admits it in the console
        await room.wait_for_video(frames=10)      # decoded frames from the browser keep coming

or, as a fixture: ``room = await room_endpoints(server_url, enrolled)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Protocol, Self

import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.call import LocalMedia, RecoveryPolicy, UnknownParticipant, synthetic_media
from clinic_client.posture import FactSource, PostureAgent, SimulatedSource
from clinic_client.session import (
    ConsultationSession,
    JoinTicket,
    SessionError,
    SessionState,
    room_join_token,
    signalling_url,
)
from device_policy.simulated import SimulatedProfile

ROOM_TAG = 2  # the mark in the room's synthetic video (host 1, room 2, specialist 3, as elsewhere)
WAIT_S = 60.0
# Recovery as quick as the other e2e tests use: a broken path is renegotiated within seconds.
QUICK = RecoveryPolicy(restart_after_s=0.5, polite_extra_s=1.0, check_interval_s=0.25)


class EnrolledDevice(Protocol):
    """An enrolled device and the key its agent holds (tests.support.signalling_scene.Enrolled)."""

    @property
    def id(self) -> str: ...

    @property
    def key(self) -> Ed25519PrivateKey: ...


class RoomEndpoint:
    """One room endpoint: posture agent, session, synthetic media, and what it received."""

    def __init__(
        self,
        server_url: str,
        device_id: str,
        key: Ed25519PrivateKey,
        *,
        source: FactSource | None = None,
        media: LocalMedia | None = None,
        recovery: RecoveryPolicy | None = QUICK,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.device_id = device_id
        self.agent = PostureAgent(
            server_url=self.server_url,
            device_id=device_id,
            private_key=key,
            source=source or SimulatedSource(SimulatedProfile.COMPLIANT),
        )
        self.media = media or synthetic_media(source_tag=ROOM_TAG)
        self._recovery = recovery
        self.ticket: JoinTicket | None = None
        self.session: ConsultationSession | None = None
        self.history: list[SessionState] = []
        # Frames from each participant, kept across hang-ups (the call forgets a participant
        # it hangs up with, and counts from zero when they come back).
        self._frames_before: dict[str, int] = {}
        self._live: dict[str, int] = {}
        self._join_task: asyncio.Task[JoinTicket] | None = None
        self.not_booked_answers = 0  # "nothing booked for this device now" answers while joining

    # --- joining -------------------------------------------------------------------------

    async def join(self, *, timeout: float = WAIT_S, poll_s: float = 0.5) -> JoinTicket:
        """Get the join token of the consultation booked for this room (asking again while nothing
        is booked), connect, and be in the waiting room."""
        if self.session is not None:
            raise RuntimeError(f"room {self.device_id} has already joined")
        deadline = time.monotonic() + timeout
        while True:
            try:
                ticket = await room_join_token(self.server_url, self.agent)
                break
            except SessionError as exc:
                if exc.code != "not_found" or time.monotonic() > deadline:
                    raise
                self.not_booked_answers += 1
            await asyncio.sleep(poll_s)
        session = ConsultationSession(
            signalling_url(self.server_url),
            ticket.token,
            media=self.media,
            posture=self.agent,
            recovery=self._recovery,
            on_change=self._changed,
        )
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        self.ticket, self.session = ticket, session
        return ticket

    def _changed(self, state: SessionState) -> None:
        self.history.append(state)
        self._keep_counts()

    def _keep_counts(self) -> None:
        call = self.session.call if self.session is not None else None
        if call is None:
            return
        for pid in call.participants:
            with contextlib.suppress(UnknownParticipant):
                self._frames_before.setdefault(pid, 0)
                self._live[pid] = call.received_frames(pid).video
        for pid in list(self._live):
            if pid not in call.participants:
                # Hung up: what it sent so far still counts.
                self._frames_before[pid] = self._frames_before.get(pid, 0) + self._live.pop(pid)

    def join_in_background(self, *, timeout: float = WAIT_S) -> asyncio.Task[JoinTicket]:
        """Start :meth:`join` as a task (the room waits for its booking while the test books it)."""
        if self._join_task is None:
            self._join_task = asyncio.create_task(
                self.join(timeout=timeout), name=f"room-join-{self.device_id}"
            )
        return self._join_task

    async def wait_joined(self, timeout: float = WAIT_S) -> JoinTicket:
        """Wait for :meth:`join_in_background` to have joined (its error, if it failed)."""
        if self._join_task is None:
            raise RuntimeError(f"room {self.device_id} is not joining")
        return await asyncio.wait_for(asyncio.shield(self._join_task), timeout)

    def require_session(self) -> ConsultationSession:
        """The session (after :meth:`join`)."""
        if self.session is None:
            raise RuntimeError(f"room {self.device_id} has not joined")
        return self.session

    @property
    def state(self) -> SessionState:
        """The session's state now."""
        return self.require_session().state

    @property
    def participant_id(self) -> str:
        """``room:<device id>`` once joined."""
        return self.require_session().client.participant_id

    async def wait_until(
        self, predicate: Callable[[SessionState], bool], timeout: float = WAIT_S
    ) -> SessionState:
        """Wait until ``predicate(state)``; on timeout the error names the state it was stuck in."""
        session = self.require_session()
        try:
            return await session.wait_until(predicate, timeout)
        except TimeoutError:
            state = session.state
            raise AssertionError(
                f"room {self.device_id}: condition not met within {timeout:g} s "
                f"(status {state.status}, consultation {state.consultation_state}, "
                f"others {[(p.role, p.status) for p in state.others]}, media {state.media})"
            ) from None

    async def wait_waiting(self, timeout: float = WAIT_S) -> SessionState:
        """Wait until the room is in the waiting room."""
        return await self.wait_until(lambda s: s.status == "waiting", timeout)

    async def wait_admitted(self, timeout: float = WAIT_S) -> SessionState:
        """Wait until the host admits the room (fails if it is denied or the consultation ends)."""
        state = await self.wait_until(
            lambda s: s.status in ("admitted", "denied", "ended", "closed"), timeout
        )
        if state.status != "admitted":
            raise AssertionError(f'room {self.device_id} was not admitted: the session is "{state.status}"')
        return state

    async def wait_media_connected(self, timeout: float = WAIT_S) -> SessionState:
        """Wait until media is connected with every admitted participant."""
        return await self.wait_until(lambda s: s.media_connected, timeout)

    # --- what it receives ------------------------------------------------------------------

    def host_id(self) -> str | None:
        """The host's participant id, once the room knows the host."""
        return next((p.id for p in self.state.others if p.role == "host"), None)

    def video_frames_from(self, participant_id: str | None = None) -> int:
        """Video frames decoded from a participant (default: the host) since the room joined."""
        pid = participant_id or self.host_id()
        if pid is None:
            return 0
        self._keep_counts()
        return self._frames_before.get(pid, 0) + self._live.get(pid, 0)

    def latest_video_frame(self, participant_id: str | None = None) -> av.VideoFrame | None:
        """The latest decoded video frame from a participant (default: the host), if any."""
        call = self.require_session().call
        pid = participant_id or self.host_id()
        if call is None or pid is None:
            return None
        with contextlib.suppress(UnknownParticipant):
            frame = call.latest_frame(pid, "video")
            return frame if isinstance(frame, av.VideoFrame) else None
        return None

    async def wait_for_video(
        self, *, frames: int = 10, participant_id: str | None = None, timeout: float = WAIT_S
    ) -> int:
        """Wait until ``frames`` more video frames are decoded from a participant (default: the
        host) than when called: the picture is live, not one frozen frame. Returns the count."""
        start = self.video_frames_from(participant_id)
        deadline = time.monotonic() + timeout
        while self.video_frames_from(participant_id) < start + frames:
            if time.monotonic() > deadline:
                who = participant_id or self.host_id() or "the host"
                raise AssertionError(
                    f"room {self.device_id} decoded {self.video_frames_from(participant_id) - start} "
                    f"new video frames from {who} in {timeout:g} s, wanted {frames} "
                    f"(status {self.state.status}, media {self.state.media})"
                )
            await asyncio.sleep(0.05)
        return self.video_frames_from(participant_id)

    # --- the end ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Leave the call, stop the media and the posture agent."""
        if self._join_task is not None and not self._join_task.done():
            self._join_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._join_task
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
        self.media.stop()
        await self.agent.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@asynccontextmanager
async def running_room(
    server_url: str, device_id: str, key: Ed25519PrivateKey, **options: object
) -> AsyncIterator[RoomEndpoint]:
    """A :class:`RoomEndpoint` for the block (not yet joined: call :meth:`RoomEndpoint.join`)."""
    room = RoomEndpoint(server_url, device_id, key, **options)  # type: ignore[arg-type]
    try:
        yield room
    finally:
        await room.close()


RoomFactory = Callable[..., Awaitable[RoomEndpoint]]


@pytest.fixture
async def room_endpoints() -> AsyncIterator[RoomFactory]:
    """Start room endpoints: ``room = await room_endpoints(server_url, enrolled)``; closed after the test.

    The room starts joining at once, in the background (it keeps asking until its consultation
    is booked); ``await room.wait_joined()`` then ``await room.wait_admitted()``. Pass
    ``join=False`` to call :meth:`RoomEndpoint.join` yourself; other keywords go to
    :class:`RoomEndpoint` (``source=``, ``media=``, ``recovery=``).
    """
    rooms: list[RoomEndpoint] = []

    async def start(
        server_url: str, device: EnrolledDevice, *, join: bool = True, **options: object
    ) -> RoomEndpoint:
        room = RoomEndpoint(server_url, device.id, device.key, **options)  # type: ignore[arg-type]
        rooms.append(room)
        if join:
            room.join_in_background()
        return room

    yield start
    for room in rooms:
        await room.close()
