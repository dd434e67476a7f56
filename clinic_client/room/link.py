"""``WS /api/signalling``: the room screen's socket to its agent.

The page sends nothing to join — the agent has joined already, or will when a consultation
is booked. On connecting, the page gets the current ``room.state``, then every new one, and the
server's ``offer``/``answer``/``ice`` from the others in the call; it may send only ``offer``,
``answer``, ``ice`` (its own media signalling, relayed through the agent's server socket) and
``ping``. The page half is the console's :class:`~clinic_client.console.bridge.PageLink`.
docs/room.md lists every message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from clinic_client.console.bridge import PageLink
from clinic_client.room.agent import RoomAgent
from clinic_client.signalling import SignallingClient

ROOM_PAGE_TYPES = frozenset({"offer", "answer", "ice", "ping"})
REPLACED_CLOSE = 4409


class RoomLink(PageLink):
    """One room page's socket, attached to the agent while it is open."""

    allowed_types = ROOM_PAGE_TYPES
    refused_words = "The room screen cannot send that."

    def __init__(self, websocket: WebSocket, agent: RoomAgent) -> None:
        super().__init__(websocket)
        self.agent = agent

    def server(self) -> SignallingClient | None:
        """The agent's server socket, while it has one."""
        return self.agent.client

    async def run(self) -> None:
        """Attach to the agent until the page goes."""
        await self.page.accept()
        try:
            await self.agent.attach(self)
            await self._from_page()
        finally:
            self.agent.detach(self)

    async def relay(self, data: Mapping[str, Any]) -> None:
        """A server message for the page, without secrets or refs that are not the page's."""
        message = self._for_page(data)
        if message is not None:
            await self.send(message)

    async def replaced(self) -> None:
        """Another page took over: say so, and close this one."""
        await self.send({"type": "agent.replaced"})
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self.page.close(REPLACED_CLOSE)
