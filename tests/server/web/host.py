"""The clinician's side of a browser test: a signalling socket plus an aiortc :class:`Call`.

Speaks protocol v1 over a real WebSocket to the live server, admits or denies from the
waiting room, and feeds relayed offers/answers/ICE to clinic_client's Call, which sends
marked synthetic video and a tone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clinic_client.call import Call, IceConfig, IceServer, LocalMedia, RecoveryPolicy, synthetic_media

Message = dict[str, Any]
HOST_TAG = 7


class HostClient:
    """One host socket and call; ``messages`` keeps everything the server sent, in order."""

    def __init__(self, ws_url: str, join_token: str) -> None:
        self.ws_url = ws_url
        self.join_token = join_token
        self.messages: list[Message] = []
        self.errors: list[BaseException] = []
        self.welcome: Message = {}
        self.call: Call | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._media: LocalMedia | None = None
        self._arrived = asyncio.Event()
        self._ids = 0
        self.close_code: int | None = None  # how the server closed the socket, once it has

    @property
    def participant_id(self) -> str:
        return str(self.welcome["participant_id"])

    async def __aenter__(self) -> HostClient:
        self._ws = await connect(self.ws_url, max_size=2**20)
        await self._send({"type": "hello", "join_token": self.join_token})
        raw = await asyncio.wait_for(self._ws.recv(), 10)
        self.welcome = json.loads(raw)
        assert self.welcome["type"] == "welcome", self.welcome
        self.messages.append(self.welcome)
        servers = tuple(
            IceServer(urls=tuple(s["urls"]), username=s.get("username"), credential=s.get("credential"))
            for s in self.welcome["ice_servers"]
        )
        self._media = synthetic_media(source_tag=HOST_TAG)
        self.call = Call(
            participant_id=self.participant_id,
            signalling=self,
            ice=IceConfig(servers=servers, policy=self.welcome["ice_policy"]),
            local_media=self._media,
            recovery=RecoveryPolicy(),
        )
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.call is not None:
            await self.call.close()
        if self._media is not None:
            self._media.stop()
        if self._ws is not None:
            await self._ws.close()

    # --- SignallingChannel for the Call ------------------------------------------------

    async def send(self, to_participant_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Send an offer, answer or ice from the Call to one participant."""
        message: Message = {"type": kind, "to": to_participant_id}
        if kind == "ice":
            for key in ("candidate", "sdpMid", "sdpMLineIndex", "usernameFragment", "connection_id"):
                if key in payload:
                    message[key] = payload[key]
        else:
            message["sdp"] = payload["sdp"]
            message["connection_id"] = payload["connection_id"]
        await self._send(message)

    # --- control -----------------------------------------------------------------------

    async def control(self, kind: str, **fields: Any) -> Message:
        """Send a host message with an id and return the server's ack or error about it."""
        self._ids += 1
        ref = f"m{self._ids}"
        await self._send({"type": kind, "id": ref, **fields})
        return await self.wait_for(lambda m: m.get("ref") == ref and m["type"] in ("ack", "error", "pong"))

    async def admit(self, participant_id: str) -> Message:
        return await self.control("admit", participant=participant_id)

    async def deny(self, participant_id: str, reason: str | None = None) -> Message:
        return await self.control("deny", participant=participant_id, reason=reason)

    async def round_trip(self) -> None:
        """A ping answered by the hub: everything the hub did before it has been sent to us."""
        pong = await self.control("ping")
        assert pong["type"] == "pong", pong

    async def wait_for(
        self, predicate: Callable[[Message], bool], *, since: int = 0, timeout: float = 20.0
    ) -> Message:
        """The first message from index ``since`` on (received or still to come) that satisfies predicate."""
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kinds = [m.get("type") for m in self.messages]
                raise AssertionError(f"no such message from the hub within {timeout} s; got {kinds}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def event(self, kind: str, participant_id: str) -> Callable[[Message], bool]:
        return lambda m: m["type"] == kind and m.get("participant", {}).get("id") == participant_id

    # --- internals ---------------------------------------------------------------------

    async def _send(self, message: Message) -> None:
        assert self._ws is not None
        await self._ws.send(json.dumps({"v": 1, **message}))

    async def _read(self) -> None:
        assert self._ws is not None and self.call is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                self.messages.append(message)
                self._arrived.set()
                if message["type"] in ("offer", "answer", "ice"):
                    try:
                        await self.call.handle_remote(message["from"], message["type"], message)
                    except Exception as exc:  # kept for the test's assertion
                        self.errors.append(exc)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
