"""A poor network link in user space: a lossy, delaying UDP relay in front of coturn, and a
TCP relay in front of the server that an outage stalls.

Kernel netem is not available on the test machines, so the impairment sits in the path
itself. :class:`ImpairedTurnRelay` is a datagram proxy between the TURN clients and a real
coturn: the server hands out the relay's ``turn:`` URL, so every TURN packet (allocations,
permissions, channel bindings and the ChannelData carrying ICE, DTLS and SRTP) crosses it,
unmodified. TURN over UDP keeps one 5-tuple per client, so the relay opens one upstream
socket per client address and coturn sees one client per peer connection, as usual.

Only the participants a test chooses are impaired: a client address is tagged with the
USERNAME of the first authenticated STUN request it sends (``<expiry>:<participant>`` in
coturn's REST API mode), and ``impaired(username)`` decides. The unauthenticated first
ALLOCATE of each client (and coturn's 401 answer) therefore always crosses; from the
authenticated request on, everything of that client is subject to the :class:`Link`:

* loss: each datagram is dropped with ``loss_up`` (client → coturn) or ``loss_down``
  (coturn → client) probability, drawn from a seeded ``random.Random`` (reproducible);
* delay: each datagram is sent ``delay_s`` later (± ``jitter_s``, uniform; with jitter
  datagrams may be reordered, as on a real link);
* outage: every datagram is dropped while ``link.outage`` is set.

:class:`StallingTcpRelay` forwards a TCP service (the server's HTTP and signalling socket)
and honours only the outage: while it lasts, bytes are held (not lost: TCP would retransmit
them) and new connections wait, so the socket sees what a dead link looks like.

Example::

    link = Link()
    async with ImpairedTurnRelay((coturn.host, coturn.port), link=link,
                                 impaired=lambda user: user.endswith(":room.room-01")) as turn:
        ...                                   # the server's turn_urls = [turn.url]
        link.impair(loss=0.05, delay_s=0.2)   # 5 % loss, 200 ms each way
        link.cut(); ...; link.restore()       # an outage
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

STUN_MAGIC_COOKIE = 0x2112A442
STUN_USERNAME = 0x0006
Direction = Literal["up", "down"]


@dataclass
class Link:
    """The conditions of the impaired link, changed by the test while the call runs."""

    loss_up: float = 0.0
    loss_down: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    outage: bool = False
    _up: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        if not self.outage:
            self._up.set()

    def impair(self, *, loss: float = 0.0, delay_s: float = 0.0, jitter_s: float = 0.0) -> None:
        """The same loss probability both ways, and a one-way delay (each way)."""
        if not 0.0 <= loss < 1.0 or delay_s < 0 or not 0 <= jitter_s <= delay_s:
            raise ValueError("loss must be in [0, 1), 0 <= jitter_s <= delay_s")
        self.loss_up = self.loss_down = loss
        self.delay_s, self.jitter_s = delay_s, jitter_s

    def clear(self) -> None:
        """A perfect link again (an outage ends too)."""
        self.impair()
        self.restore()

    def cut(self) -> None:
        """Drop everything from now on (both ways) until :meth:`restore`."""
        self.outage = True
        self._up.clear()

    def restore(self) -> None:
        """End the outage."""
        self.outage = False
        self._up.set()

    async def wait_up(self) -> None:
        """Return when there is no outage."""
        await self._up.wait()


def stun_username(datagram: bytes) -> str | None:
    """The USERNAME attribute of a STUN message, or None (not STUN, or no username)."""
    if len(datagram) < 20 or datagram[0] >= 0x40:  # 0x40-0x7f: ChannelData
        return None
    length, cookie = struct.unpack_from("!HI", datagram, 2)
    if cookie != STUN_MAGIC_COOKIE:
        return None
    offset, end = 20, min(len(datagram), 20 + length)
    while offset + 4 <= end:
        kind, size = struct.unpack_from("!HH", datagram, offset)
        if kind == STUN_USERNAME:
            return datagram[offset + 4 : offset + 4 + size].decode("utf-8", "replace")
        offset += 4 + size + (-size % 4)
    return None


@dataclass
class LinkCounters:
    """Datagrams of impaired clients: forwarded and dropped, per direction."""

    forwarded: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    dropped: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})


class _Client:
    """One TURN client address and the upstream socket that stands for it at coturn."""

    def __init__(self, address: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(upstream)
        self.username: str | None = None
        self.impaired = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class ImpairedTurnRelay(asyncio.DatagramProtocol):
    """A UDP proxy to coturn that impairs the clients ``impaired(username)`` selects."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        link: Link,
        impaired: Callable[[str], bool],
        seed: int = 12,
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream
        self.link = link
        self.host = host
        self.port = 0
        self.counters = LinkCounters()
        self._impaired = impaired
        self._random = random.Random(seed)
        self._clients: dict[tuple[str, int], _Client] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """The ``turn:`` URL to hand out instead of coturn's."""
        return f"turn:{self.host}:{self.port}?transport=udp"

    def impaired_usernames(self) -> list[str]:
        """TURN usernames whose clients are impaired (one per peer connection so far)."""
        return [c.username for c in self._clients.values() if c.impaired and c.username]

    async def start(self) -> Self:
        """Listen on a free UDP port."""
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self

    async def close(self) -> None:
        """Stop listening and close every upstream socket."""
        for client in self._clients.values():
            if self._loop is not None:
                self._loop.remove_reader(client.sock.fileno())
            client.close()
        self._clients.clear()
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- forwarding ----------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        client = self._clients.get(addr)
        if client is None:
            client = self._clients[addr] = _Client(addr, self.upstream)
            assert self._loop is not None
            self._loop.add_reader(client.sock.fileno(), self._from_upstream, client)
        if client.username is None:
            client.username = stun_username(data)
            client.impaired = client.username is not None and self._impaired(client.username)
        self._forward(client, "up", data)

    def _from_upstream(self, client: _Client) -> None:
        while not client.closed:
            try:
                data = client.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable from a closed coturn port: try the next one
            self._forward(client, "down", data)

    def _forward(self, client: _Client, direction: Direction, data: bytes) -> None:
        if client.impaired:
            link = self.link
            loss = link.loss_up if direction == "up" else link.loss_down
            if link.outage or (loss and self._random.random() < loss):
                self.counters.dropped[direction] += 1
                return
            self.counters.forwarded[direction] += 1
            delay = link.delay_s + (
                self._random.uniform(-link.jitter_s, link.jitter_s) if link.jitter_s else 0
            )
            if delay > 0:
                assert self._loop is not None
                self._loop.call_later(delay, self._send, client, direction, data)
                return
        self._send(client, direction, data)

    def _send(self, client: _Client, direction: Direction, data: bytes) -> None:
        if client.closed:
            return
        with contextlib.suppress(OSError):  # a full buffer loses the datagram, as a link would
            if direction == "up":
                client.sock.send(data)
            elif self._transport is not None:
                self._transport.sendto(data, client.address)


class StallingTcpRelay:
    """A TCP proxy that holds all bytes (and new connections) while ``link.outage`` is set."""

    def __init__(self, upstream: tuple[str, int], *, link: Link, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.link = link
        self.host = host
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``http://host:port``: give it as the server URL (the socket URL follows)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        """Listen on a free TCP port."""
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        """Stop accepting and cut every proxied connection."""
        if self._server is not None:
            self._server.close()
        self.link.restore()  # nothing may stay held, or its connection would never end
        for writer in list(self._writers):
            writer.transport.abort()  # the pumps see the connection reset and finish
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await self.link.wait_up()  # a connection made during an outage goes nowhere yet
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                up_writer.transport.abort()
                self._writers.discard(up_writer)
        except OSError:
            pass  # one side reset: the other is cut below, as a proxy would
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self.link.wait_up()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
