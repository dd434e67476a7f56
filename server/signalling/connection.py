"""One participant's socket: reading frames, a bounded outgoing queue, and the per-socket limits.

Writes never block the hub: :meth:`Connection.send` queues the frame and one writer task
per socket drains the queue in order. A client that stops reading fills its queue and is
closed (4430) instead of making every sender wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketState

from server.signalling.limits import SignallingLimits, TokenBucket
from server.signalling.protocol import CloseCode, ErrorCode, error_frame

if TYPE_CHECKING:
    from server.signalling.ports import JoinGrant, PostureGrant

log = logging.getLogger("telemed.signalling")


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class Binary:
    """Marker for a binary frame (the protocol is text only)."""


BINARY = Binary()


class Connection:
    """A socket and what the hub knows about whoever is on it."""

    def __init__(self, websocket: WebSocket, limits: SignallingLimits) -> None:
        self.websocket = websocket
        self.id = secrets.token_urlsafe(12)
        self.limits = limits
        self.rate = TokenBucket(rate=limits.rate_per_s, burst=limits.burst)
        self.error_budget = TokenBucket(rate=limits.error_refill_per_s, burst=limits.error_budget)
        self._queue: asyncio.Queue[str | _Close] = asyncio.Queue(maxsize=limits.send_queue)
        self._writer: asyncio.Task[None] | None = None
        self.closing = False
        self.close_code: int | None = None
        # Set once the participant has joined.
        self.grant: JoinGrant | None = None
        self.posture: PostureGrant | None = None
        self.posture_timer: asyncio.TimerHandle | None = None
        # TURN credentials: when this socket's are due for renewal, the pending renewal,
        # and whether a renewal fell due while the participant was not admitted.
        self.ice_refresh_at: float | None = None
        self.ice_timer: asyncio.TimerHandle | None = None
        self.ice_stale = False
        # True when this socket's participant no longer needs its presence record updated
        # on disconnect (replaced, left, denied, or the consultation ended).
        self.detached = False
        client = websocket.client
        self.ip = client.host if client else None
        self.request_id: str | None = getattr(websocket.state, "request_id", None)

    @property
    def participant_id(self) -> str:
        """The participant on this socket (only after join)."""
        assert self.grant is not None  # noqa: S101 - the hub only asks after join
        return self.grant.participant_id

    def stop_posture_timer(self) -> None:
        """Forget the pending posture-lapse check (the socket is going, or a new posture came)."""
        if self.posture_timer is not None:
            self.posture_timer.cancel()
            self.posture_timer = None

    def stop_ice_timer(self) -> None:
        """Forget the pending TURN credential renewal."""
        if self.ice_timer is not None:
            self.ice_timer.cancel()
            self.ice_timer = None

    def stop_timers(self) -> None:
        """Forget every pending check and renewal (the socket is going)."""
        self.stop_posture_timer()
        self.stop_ice_timer()

    def detach(self) -> None:
        """This socket no longer speaks for its participant (replaced, left, denied, ended)."""
        self.detached = True
        self.stop_timers()

    def start(self) -> None:
        """Start the writer."""
        self._writer = asyncio.create_task(self._write_forever(), name=f"ws-writer-{self.id}")

    async def receive(self) -> str | Binary | None:
        """The next frame: text, :data:`BINARY`, or None once the socket is gone."""
        message = await self.websocket.receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return BINARY
        return None

    def send(self, frame: str) -> None:
        """Queue one frame; a client too slow to read its queue is closed."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("closing a signalling socket that does not read", extra={"conn": self.id})
            self._force_close(CloseCode.SLOW_CONSUMER, ErrorCode.SLOW_CONSUMER.value)

    def error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        """Queue an ``error`` message."""
        self.send(error_frame(code, message, ref))

    def close(self, code: int, reason: str = "") -> None:
        """Close after the frames already queued have been written."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        try:
            self._queue.put_nowait(_Close(code, reason[:120]))
        except asyncio.QueueFull:
            self._force_close(code, reason)

    def _force_close(self, code: int, reason: str) -> None:
        self.closing = True
        self.close_code = code
        # Drop what the client did not read; the close frame goes first.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_Close(code, reason[:120]))

    async def finish(self, timeout: float = 2.0) -> None:
        """Wait (briefly) for queued frames and the close frame to be written."""
        writer = self._writer
        if writer is None:
            return
        if not self.closing:
            self.closing = True
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_Close(CloseCode.NORMAL, ""))
        try:
            await asyncio.wait_for(asyncio.shield(writer), timeout)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write_forever(self) -> None:
        websocket = self.websocket
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Close):
                    if websocket.application_state is WebSocketState.CONNECTED:
                        await websocket.close(item.code, item.reason)
                    return
                await websocket.send_text(item)
            except Exception:
                # The peer went away mid-write; the reader sees the disconnect.
                self.closing = True
                return
