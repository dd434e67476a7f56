"""The specialist's page in real Chromium against a live server, with the host as an aiortc client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import pytest
from playwright.async_api import Page, WebSocket, expect

from tests.server.web.conftest import (
    HOST_NAME,
    PATIENT_NAME,
    PRISON_NUMBER,
    SPECIALIST_NAME,
    Booking,
    LiveServer,
)
from tests.server.web.host import HostClient
from tests.support.browser import watched_page
from tests.support.loopback import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 20_000


class Frames:
    """Every signalling frame the page received, as JSON (the page's own socket, unchanged)."""

    def __init__(self, page: Page) -> None:
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        page.on("websocket", self._on_socket)

    def _on_socket(self, ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))

    def types(self) -> list[str]:
        return [m["type"] for m in self.received]


async def screen(page: Page) -> str | None:
    value = await page.evaluate("document.body.dataset.screen")
    return None if value is None else str(value)


async def wait_for_screen(page: Page, name: str) -> None:
    await page.wait_for_function("name => document.body.dataset.screen === name", arg=name, timeout=WAIT_MS)


async def remote_video_playing(page: Page, participant_id: str) -> None:
    """The participant's <video> shows a real picture whose time moves on."""
    selector = f'figure[data-participant="{participant_id}"] video'
    await page.wait_for_function(
        "sel => { const v = document.querySelector(sel); return v && v.videoWidth > 0 && v.currentTime > 0 }",
        arg=selector,
        timeout=WAIT_MS,
    )
    before = await page.eval_on_selector(selector, "v => v.currentTime")
    await page.wait_for_function(
        "([sel, t]) => document.querySelector(sel).currentTime > t + 0.5",
        arg=[selector, before],
        timeout=WAIT_MS,
    )


async def test_specialist_waits_is_admitted_and_media_flows_both_ways(
    live_server: LiveServer, booking: Booking, chromium: Any, tmp_path: Path
) -> None:
    specialist = booking.specialist_id
    async with HostClient(live_server.ws_url, booking.host_join_token) as host:
        async with watched_page(chromium) as (page, watch):
            frames = Frames(page)
            await page.goto(booking.invite_link)

            # The waiting room, and the invite token gone from the address bar.
            await expect(page.get_by_role("heading", name="You are in the waiting room")).to_be_visible(
                timeout=WAIT_MS
            )
            await expect(page.get_by_text("The clinician will let you in shortly.")).to_be_visible()
            await expect(page.locator("#detail-name")).to_have_text(SPECIALIST_NAME)
            await expect(page.locator("#detail-host")).to_have_text(HOST_NAME)
            assert page.url == f"{live_server.url}/join"
            assert frames.sent[0]["type"] == "hello"

            # Nobody is auto-admitted: the host sees them waiting, and after a round trip
            # through the hub the page is still waiting and was never told it was admitted.
            joined = await host.wait_for(host.event("participant.joined", specialist))
            assert joined["participant"]["status"] == "waiting"
            assert joined["participant"]["name"] == SPECIALIST_NAME
            await host.round_trip()
            assert await screen(page) == "waiting"
            assert "admitted" not in frames.types()
            await page.screenshot(path=str(tmp_path / "waiting-room.png"), full_page=True)

            ack = await host.admit(specialist)
            assert ack["type"] == "ack", ack
            call = host.call
            assert call is not None
            await call.connect_to(specialist)

            await wait_for_screen(page, "call")
            tile = page.locator(f'figure[data-participant="{host.participant_id}"]')
            await expect(tile.locator(".name")).to_have_text(HOST_NAME)
            await expect(page.get_by_role("button", name="Leave consultation")).to_be_visible()

            # Browser side: the host's synthetic video plays and keeps playing.
            await remote_video_playing(page, host.participant_id)

            # aiortc side: video and audio frames decoded from Chromium's fake camera and microphone.
            await call.wait_for_state(specialist, "connected", timeout=20)
            await eventually(
                lambda: call.received_frames(specialist).video > 5,
                timeout=20,
                message="the host decoded no video from the browser",
            )
            seen = call.received_frames(specialist)
            await eventually(
                lambda: call.received_frames(specialist).video > seen.video + 5,
                timeout=20,
                message="the browser's video stopped",
            )
            assert call.received_frames(specialist).audio > 0
            frame = call.latest_frame(specialist, "video")
            assert isinstance(frame, av.VideoFrame) and frame.width > 0 and frame.height > 0

            # Connection quality from getStats.
            await expect(tile.locator(".quality")).to_contain_text("Good connection", timeout=WAIT_MS)
            await expect(tile.locator(".quality")).to_contain_text("% lost")
            await page.screenshot(path=str(tmp_path / "in-call.png"), full_page=True)

            # The specialist never sees anything about the patient.
            text = await page.locator("body").inner_text()
            assert PATIENT_NAME not in text
            assert PRISON_NUMBER not in text
            assert not host.errors
            watch.assert_clean()
