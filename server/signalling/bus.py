"""Messages between server nodes: channels with subscribers, in-process or over Redis pub/sub.

The hub publishes on a channel per consultation (relayed offers/answers/ICE for a
participant held by another node, and presence change events) and on one control channel
(``suspend_device``). Handlers are plain callables that must not block: the hub's handler
decodes the envelope and queues frames for its sockets.

Delivery is at most once and in order per publisher: Redis pub/sub drops messages while
a subscriber is disconnected, so anything that must survive (who is admitted) lives in
:mod:`presence`; the bus only carries news of it. When the connection comes back after
messages may have been lost (a read or a publish failed), the bus calls its recovery
handler, and the hub tells its sockets to resync (:mod:`server.signalling.recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("telemed.signalling.bus")

Handler = Callable[[bytes], None]


class Bus(Protocol):
    """Publish/subscribe between the nodes of one deployment."""

    async def start(self) -> None:
        """Connect (and start reading, for a remote bus)."""
        ...

    async def close(self) -> None:
        """Stop reading and release connections."""
        ...

    async def publish(self, channel: str, data: bytes) -> None:
        """Send ``data`` to every subscriber of ``channel`` (this node's included)."""
        ...

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with every message published on ``channel`` from now on."""
        ...

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``channel``."""
        ...

    async def ping(self) -> None:
        """Raise if the bus cannot be reached (readiness)."""
        ...

    def on_recovered(self, handler: Callable[[], None]) -> None:
        """Call ``handler`` each time the bus is back after messages may have been lost."""
        ...


class _Subscriptions:
    """Handlers per channel; shared by both buses."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}

    def add(self, channel: str, handler: Handler) -> bool:
        """Add a handler; True if the channel is new."""
        handlers = self.handlers.setdefault(channel, [])
        handlers.append(handler)
        return len(handlers) == 1

    def remove(self, channel: str, handler: Handler) -> bool:
        """Remove a handler; True if the channel has none left."""
        handlers = self.handlers.get(channel)
        if not handlers:
            return False
        with contextlib.suppress(ValueError):
            handlers.remove(handler)
        if handlers:
            return False
        del self.handlers[channel]
        return True

    def dispatch(self, channel: str, data: bytes) -> None:
        for handler in list(self.handlers.get(channel, ())):
            try:
                handler(data)
            except Exception:
                log.exception("bus handler failed", extra={"channel": channel})


class InProcessBus:
    """The embedded default: every subscriber lives in this process (and this event loop).

    Delivery is asynchronous (``loop.call_soon``), never inside ``publish``, so it behaves
    like the Redis bus: a publisher is not re-entered by its own message.
    """

    def __init__(self) -> None:
        self._subs = _Subscriptions()

    async def start(self) -> None:
        return None

    def on_recovered(self, handler: Callable[[], None]) -> None:
        return None  # nothing is ever lost in one process

    async def close(self) -> None:
        self._subs.handlers.clear()

    async def publish(self, channel: str, data: bytes) -> None:
        if channel in self._subs.handlers:
            asyncio.get_running_loop().call_soon(self._subs.dispatch, channel, data)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        self._subs.add(channel, handler)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        self._subs.remove(channel, handler)

    async def ping(self) -> None:
        return None


class RedisBus:
    """Redis pub/sub: one subscriber connection per node, read by one task.

    When the connection drops, the reader reconnects with back-off and redis-py
    re-subscribes every channel; messages published meanwhile are lost (see module doc).
    """

    def __init__(
        self, client: aioredis.Redis, *, retry_max_s: float = 5.0, max_backlog: int = 10_000, batch: int = 256
    ) -> None:
        self._redis = client
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._subs = _Subscriptions()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=max_backlog)
        self._batch = batch
        self._retry_max_s = retry_max_s
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        # Set when a read or a publish failed: messages may be lost until the reader is back.
        self._interrupted = False
        self._recovered: Callable[[], None] | None = None

    def on_recovered(self, handler: Callable[[], None]) -> None:
        self._recovered = handler

    async def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="redis-bus-writer")

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            # Give what is queued a moment to leave, then stop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), 1.0)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()

    async def publish(self, channel: str, data: bytes) -> None:
        """Queue for the writer, which sends in order and pipelines what has piled up.

        A relay must not wait for a Redis round trip per message; one writer per node keeps
        the order every publisher relies on.
        """
        try:
            self._outbox.put_nowait((channel, data))
        except asyncio.QueueFull:
            log.warning("redis bus backlog full; dropping a message", extra={"channel": channel})

    async def _write_forever(self) -> None:
        while True:
            items = [await self._outbox.get()]
            while len(items) < self._batch and not self._outbox.empty():
                items.append(self._outbox.get_nowait())
            try:
                if len(items) == 1:
                    await self._redis.publish(*items[0])
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, data in items:
                            pipe.publish(channel, data)
                        await pipe.execute()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._interrupted = True
                log.warning(
                    "redis bus could not publish; messages lost", extra={"error_type": type(exc).__name__}
                )
            finally:
                for _ in items:
                    self._outbox.task_done()

    async def subscribe(self, channel: str, handler: Handler) -> None:
        async with self._lock:
            if self._subs.add(channel, handler):
                await self._pubsub.subscribe(channel)
                self._ready.set()

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        async with self._lock:
            if self._subs.remove(channel, handler):
                await self._pubsub.unsubscribe(channel)

    async def ping(self) -> None:
        await self._redis.ping()

    async def _read_forever(self) -> None:
        delay = 0.1
        while True:
            # redis-py refuses to read before the first subscription.
            await self._ready.wait()
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                delay = 0.1
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._interrupted = True
                log.warning("redis bus connection lost; retrying", extra={"error_type": type(exc).__name__})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            if self._interrupted:
                # Reading again (redis-py has subscribed every channel anew).
                self._interrupted = False
                log.warning("redis bus connection is back; messages published meanwhile are lost")
                if self._recovered is not None:
                    self._recovered()
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else str(channel)
            self._subs.dispatch(name, message["data"])
