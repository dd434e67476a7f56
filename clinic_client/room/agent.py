"""The room endpoint's agent: finds the consultation booked for the room, joins it, follows it.

Nothing in the room is operated. :class:`RoomAgent` asks the server for the room's join token
(its posture token and a device-key proof are the credential, as ``telemed-client room``
does), asking again every ``poll_s`` while nothing is booked; connects a
:class:`~clinic_client.signalling.SignallingClient` (posture renewal and resume inside) and
follows the consultation, telling the page one :class:`~clinic_client.room.state.RoomState`
at a time and relaying the page's media signalling (clinic_client/room/link.py). It joins only
while a screen is attached (or for ``page_grace_s`` after it went, so a reload keeps the
room's place in the call), and starts again by itself after a dropped link, a restarted
server or an ended consultation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from clinic_client.posture import PostureError, ServerUnreachable
from clinic_client.room.state import Booking, RoomState, Roster, Screen, screen_of
from clinic_client.session import JoinTicket, SessionError, room_join_token, signalling_url
from clinic_client.signalling import (
    JoinRefused,
    PostureSource,
    ServerEvent,
    SignallingClient,
    SignallingError,
)

log = logging.getLogger("telemed.room.agent")

# Close codes after which this room must not join the same consultation again.
_OVER_FOR_US = frozenset({4403, 4404, 4410})
_RELAYED = frozenset({"offer", "answer", "ice", "error"})


class PageSink(Protocol):
    """The attached page, as the agent talks to it (clinic_client/room/link.py ``RoomLink``)."""

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send the page one message."""
        ...

    async def relay(self, data: Mapping[str, Any]) -> None:
        """Send the page a server message (secrets and foreign refs removed)."""
        ...

    async def replaced(self) -> None:
        """Tell the page another screen took over, and close it."""
        ...


class RoomAgent:
    """The agent behind the room's screen (see the module docstring)."""

    def __init__(
        self,
        *,
        server_url: str,
        posture: PostureSource,
        poll_s: float = 30.0,
        retry_s: float = 5.0,
        ended_hold_s: float = 60.0,
        page_grace_s: float = 30.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.posture = posture
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.ended_hold_s = ended_hold_s
        self.page_grace_s = page_grace_s
        self.state = RoomState("starting")
        self.client: SignallingClient | None = None
        self.history: list[Screen] = ["starting"]
        self._page: PageSink | None = None
        self._page_left_at: float | None = None
        self._page_here = asyncio.Event()
        self._sent: dict[str, Any] | None = None
        self._finished: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._tokens: list[str] = []

    # --- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start following the room's bookings (the app's startup)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="room-agent")

    async def aclose(self) -> None:
        """Leave any call and stop (the app's shutdown)."""
        client = self.client
        if client is not None:
            # Leave first: the others see the room go now, not after the resume grace period.
            await client.leave()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        closer = getattr(self.posture, "aclose", None)
        if closer is not None:
            await closer()

    def secrets(self) -> list[str]:
        """Every token the agent has held (for tests that prove none reaches the page)."""
        held = list(self._tokens)
        client = self.client
        if client is not None:
            # The signalling client keeps its resume token to itself; a test needs to know it.
            held.append(getattr(client, "_resume_token", None) or "")
        current = self.posture.current
        if current is not None:
            held.append(str(current.token))
        return [s for s in held if s]

    # --- the page --------------------------------------------------------------------------

    async def attach(self, page: PageSink) -> None:
        """A page connected: it replaces any other and gets the state now."""
        previous, self._page = self._page, page
        self._page_left_at = None
        self._page_here.set()
        self._sent = None
        if previous is not None and previous is not page:
            await previous.replaced()
        await self._tell_page()

    def detach(self, page: PageSink) -> None:
        """A page went (closed, reloaded): the room keeps its place for ``page_grace_s``."""
        if self._page is page:
            self._page = None
            self._page_left_at = asyncio.get_running_loop().time()
            self._page_here.clear()

    def page_present(self) -> bool:
        """True while a page is attached, or went less than ``page_grace_s`` ago."""
        if self._page is not None:
            return True
        left = self._page_left_at
        return left is not None and asyncio.get_running_loop().time() - left < self.page_grace_s

    async def _tell_page(self) -> None:
        page = self._page
        if page is None:
            return
        wire = self.state.to_wire()
        if wire != self._sent:
            self._sent = wire
            await page.send(wire)

    async def _show(
        self,
        screen: Screen,
        *,
        booking: Booking | None = None,
        reason: str | None = None,
        roster: Roster | None = None,
    ) -> None:
        if screen != self.state.screen:
            log.info("screen: %s%s", screen, f" ({reason})" if reason else "")
            self.history.append(screen)
        self.state = RoomState(screen, booking=booking, reason=reason, roster=roster)
        await self._tell_page()

    # --- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if not self.page_present():
                    await self._page_here.wait()
                ticket = await self._find_booking()
                await self._take_part(ticket)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug must not leave a patient in front of a frozen screen: start again.
                log.exception("the room agent failed; starting again")
                await self._show("reconnecting", reason="agent")
                await asyncio.sleep(self.retry_s)

    async def _find_booking(self) -> JoinTicket:
        """The join ticket of the consultation booked now (idle, or why not, until there is one)."""
        while True:
            wait = self.poll_s
            try:
                ticket = await room_join_token(self.server_url, self.posture)
            except SessionError as exc:
                if exc.code == "not_found":
                    await self._show("idle")
                elif exc.code == "unreachable" or (exc.status or 500) >= 500:
                    await self._show("reconnecting", reason="server")
                    wait = self.retry_s
                else:
                    log.warning("the server refused the room's join token: %s", exc.code)
                    await self._show("unavailable", reason=exc.code)
            except ServerUnreachable:
                await self._show("reconnecting", reason="server")
                wait = self.retry_s
            except PostureError as exc:
                log.warning("device check failed: %s", exc.code)
                await self._show("unavailable", reason="device_check")
            else:
                if ticket.consultation_id not in self._finished:
                    self._tokens.append(ticket.token)
                    return ticket
                await self._show("idle")
            await asyncio.sleep(wait)

    async def _take_part(self, ticket: JoinTicket) -> None:
        """Join one consultation and follow it until it ends, the link is lost, or the page is gone."""
        booking = Booking(
            consultation_id=ticket.consultation_id,
            clinician=ticket.host_name or "your clinician",
            starts_at=ticket.scheduled_start,
            ends_at=ticket.scheduled_end,
        )
        if self.state.screen not in ("booked", "waiting", "call", "reconnecting"):
            await self._show("booked", booking=booking)
        client = SignallingClient(signalling_url(self.server_url), ticket.token, posture=self.posture)
        try:
            await client.connect()
        except JoinRefused as exc:
            log.warning("join refused: %s (close %s)", exc.code, exc.close_code)
            if exc.close_code in _OVER_FOR_US:
                self._finished.add(ticket.consultation_id)
                await self._ended(booking)
            else:
                await self._show("reconnecting", booking=booking, reason="server")
                await asyncio.sleep(self.retry_s)
            return
        except SignallingError:
            await self._show("reconnecting", booking=booking, reason="server")
            await asyncio.sleep(self.retry_s)
            return
        self.client = client
        roster = Roster()
        roster.welcome(client.welcome_data)
        try:
            await self._show(screen_of(roster), booking=booking, roster=roster)
            await self._follow(client, booking, roster)
        finally:
            self.client = None
            await client.close()

    async def _follow(self, client: SignallingClient, booking: Booking, roster: Roster) -> None:
        while True:
            try:
                event = await client.next_event(timeout=1.0)
            except TimeoutError:
                if not self.page_present():
                    log.info("no screen for %g s: leaving the consultation", self.page_grace_s)
                    await client.leave()
                    await self._show("starting")
                    return
                continue
            if event.type == "closed":
                break
            await self._on_event(event, booking, roster)
        code = client.close_code
        if screen_of(roster) == "ended" or code in _OVER_FOR_US:
            self._finished.add(booking.consultation_id)
            await self._ended(booking)
        elif code == 4409:
            # Another agent joined as this room: two screens must not fight over one place.
            self._finished.add(booking.consultation_id)
            await self._show("unavailable", reason="replaced")
        else:
            # The resume failed (the server restarted, or the link was down too long): join afresh.
            await self._show("reconnecting", booking=booking, reason="server")
            await asyncio.sleep(min(self.retry_s, 1.0))

    async def _on_event(self, event: ServerEvent, booking: Booking, roster: Roster) -> None:
        if event.type in _RELAYED:
            if self._page is not None:
                await self._page.relay(event.data)
            return
        if event.type == "reconnecting":
            await self._show("reconnecting", booking=booking, reason="server", roster=roster)
            return
        if event.type == "reconnected":
            roster.welcome(event.data)
        else:
            roster.apply(event)
        await self._show(screen_of(roster), booking=booking, roster=roster, reason=self._reason(roster))

    @staticmethod
    def _reason(roster: Roster) -> str | None:
        return "paused" if roster.status == "suspended" else None

    async def _ended(self, booking: Booking) -> None:
        await self._show("ended", booking=booking)
        await asyncio.sleep(self.ended_hold_s)
