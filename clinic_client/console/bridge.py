"""``WS /api/signalling``: the page's signalling, carried to the server by the agent.

The page says ``{"type": "join", "consultation_id": …}``; the agent makes sure the posture is
fresh, gets the host join token (with the posture headers), connects a
:class:`~clinic_client.signalling.SignallingClient` (which answers posture renewal and resumes
a dropped socket by itself) and sends the page the server's ``welcome`` without its resume
token. From then on protocol messages pass both ways; the agent adds its own ``agent.*``
events. docs/console.md lists every message. :class:`PageLink` is the page half (the room
screen's agent uses it too, clinic_client/room/link.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from clinic_client.console.errors import ConsoleError
from clinic_client.console.posture import PostureView
from clinic_client.console.session import ConsoleAgent
from clinic_client.session import signalling_url
from clinic_client.signalling import (
    FORWARDABLE_TYPES,
    JoinRefused,
    NotConnected,
    SignallingClient,
    SignallingError,
)

log = logging.getLogger("telemed.console.bridge")

JOIN_TIMEOUT_S = 30.0
PAGE_REF_PREFIX = "p:"
MAX_PAGE_ID = 60
# Never forwarded to the page, wherever they appear at the top of a message.
SECRET_FIELDS = frozenset({"resume_token", "join_token", "posture_token", "posture_proof", "token"})
# Replies to the agent's own requests (posture renewal): not the page's business.
_OWN_REPLIES = frozenset({"ack", "pong", "posture.accepted"})


def scrub(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message without any secret field (also inside a nested ``welcome``)."""
    clean = {k: v for k, v in message.items() if k not in SECRET_FIELDS}
    if isinstance(clean.get("welcome"), Mapping):
        clean["welcome"] = scrub(clean["welcome"])
    return clean


def _close_code(status: int) -> int:
    return {401: 4401, 403: 4403}.get(status, 4403 if 400 <= status < 500 else 1011)


class PageLink:
    """One page socket: sending to it, reading it, and carrying its protocol messages to the
    agent's server socket (the console's bridge, and the room screen's)."""

    # What the page may send on; its words when it sends anything else.
    allowed_types: frozenset[str] = FORWARDABLE_TYPES
    refused_words = "The console cannot send that."

    def __init__(self, websocket: WebSocket) -> None:
        self.page = websocket
        self.client: SignallingClient | None = None
        self._send_lock = asyncio.Lock()
        self._ended = False

    def server(self) -> SignallingClient | None:
        """The server socket the page's messages go to now (None: not joined)."""
        return self.client

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send the page one message (one sender at a time)."""
        async with self._send_lock:
            if self.page.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await self.page.send_text(json.dumps(message))

    async def refuse(self, code: str, message: str, close_code: int) -> None:
        """Tell the page why, then close its socket."""
        await self.send({"type": "error", "code": code, "message": message})
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self.page.close(close_code)

    def _for_page(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        message = scrub(data)
        ref = message.get("ref")
        if isinstance(ref, str):
            if ref.startswith(PAGE_REF_PREFIX):
                message["ref"] = ref[len(PAGE_REF_PREFIX) :]
            elif message.get("type") in _OWN_REPLIES:
                return None
            else:
                del message["ref"]
        return message

    async def _from_page(self) -> None:
        while True:
            try:
                raw = await self.page.receive_text()
            except WebSocketDisconnect:
                return
            except KeyError:  # a binary frame
                await self.send({"type": "error", "code": "binary_not_supported", "message": "Send text."})
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                await self.send({"type": "error", "code": "bad_json", "message": "The message is not JSON."})
                continue
            await self._forward(message)

    async def _forward(self, message: Any) -> None:
        page_id = message.get("id") if isinstance(message, dict) else None
        reply: dict[str, Any] = {"type": "error"}
        if isinstance(page_id, str):
            reply["ref"] = page_id
        if not isinstance(message, dict) or message.get("type") not in self.allowed_types:
            await self.send({**reply, "code": "unknown_type", "message": self.refused_words})
            return
        if page_id is not None and (not isinstance(page_id, str) or not 0 < len(page_id) <= MAX_PAGE_ID):
            await self.send({**reply, "code": "invalid_message", "message": "The id is not valid."})
            return
        if message["type"] == "ping":
            # The agent answers for itself: the page wants to know the agent is there.
            await self.send({"v": 1, "type": "pong", **({"ref": page_id} if page_id else {})})
            return
        outgoing = {k: v for k, v in message.items() if k not in SECRET_FIELDS}
        if page_id is not None:
            outgoing["id"] = f"{PAGE_REF_PREFIX}{page_id}"
        client = self.server()
        try:
            if client is None:
                raise NotConnected("Not joined", code="not_connected")
            await client.send_message(outgoing)
        except SignallingError as exc:
            await self.send({**reply, "code": exc.code, "message": "Not connected to the server just now."})
            return
        if message["type"] == "end":
            self._ended = True


class Bridge(PageLink):
    """One page socket joined to one server socket."""

    def __init__(self, websocket: WebSocket, agent: ConsoleAgent) -> None:
        super().__init__(websocket)
        self.agent = agent
        self.consultation_id = ""

    async def run(self) -> None:
        """Join, relay until either side closes, then leave (unless the page ended the consultation)."""
        await self.page.accept()
        if not await self._join():
            return
        assert self.client is not None  # noqa: S101 - set by a successful join
        stop_posture = self.agent.posture.subscribe(self._on_posture)
        server = asyncio.create_task(self._from_server(), name="bridge-from-server")
        page = asyncio.create_task(self._from_page(), name="bridge-from-page")
        try:
            await asyncio.wait({server, page}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_posture()
            self.agent.calls.discard(self.client)
            for task in (server, page):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._ended or self.client.state == "closed":
                await self.client.close()
            else:
                await self.client.leave()
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                if self.page.application_state == WebSocketState.CONNECTED:
                    await self.page.close(1000)

    async def _join(self) -> bool:
        try:
            first = json.loads(await asyncio.wait_for(self.page.receive_text(), JOIN_TIMEOUT_S))
        except (TimeoutError, WebSocketDisconnect):
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await self.page.close(4408)
            return False
        except (ValueError, KeyError):
            await self.refuse("bad_json", "The first message must be a JSON join.", 4400)
            return False
        if not isinstance(first, dict) or first.get("type") != "join" or not first.get("consultation_id"):
            await self.refuse("join_required", "The first message must be a join.", 4400)
            return False
        self.consultation_id = str(first["consultation_id"])
        try:
            self.agent.require_ready()
            token = await self.agent.host_join_token(self.consultation_id)
        except ConsoleError as exc:
            await self.refuse(exc.code, exc.detail, _close_code(exc.status))
            return False
        client = SignallingClient(signalling_url(self.agent.server_url), token, posture=self.agent.posture)
        try:
            await client.connect()
        except JoinRefused as exc:
            close = 4401 if exc.close_code == 4401 else 4403
            await self.refuse(exc.code, "The server refused to join this consultation.", close)
            return False
        except SignallingError:
            await self.refuse("server_unreachable", "The telemed server cannot be reached.", 1011)
            return False
        self.client = client
        self.agent.calls.add(client)
        log.info("bridge joined (%s)", client.welcome.participant_id if client.welcome else "?")
        await self.send(scrub(client.welcome_data))
        return True

    async def _on_posture(self, view: PostureView) -> None:
        await self.send({"type": "agent.posture", "posture": view.to_wire()})

    async def _from_server(self) -> None:
        assert self.client is not None  # noqa: S101 - joined
        async for event in self.client:
            if event.type == "reconnecting":
                await self.send({"type": "agent.reconnecting"})
            elif event.type == "reconnected":
                await self.send({"type": "agent.reconnected", "welcome": scrub(event.data)})
            elif event.type == "closed":
                await self.send({"type": "agent.closed", "close_code": event.close_code})
                return
            else:
                if event.type == "consultation.ended":
                    self.agent.grants.drop(self.consultation_id)
                message = self._for_page(event.data)
                if message is not None:
                    await self.send(message)
