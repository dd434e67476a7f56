"""The room's screen in real Chromium (fake camera and microphone), driven only by its agent.

Nothing is pressed: the page goes from "No appointment right now" to the booked appointment,
the waiting room, the call and "The appointment has ended" while the clinician — the SDK
(aiortc) with synthetic media on the real signalling socket — lets the room in and ends the
consultation. Media flows both ways (the page plays the clinician's video; the clinician
decodes the room's camera), a reload in the middle of the call comes back into the call by
itself, and every screen passes axe-core and is photographed to test-artifacts/room/.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC

import pytest
from playwright.async_api import Page, WebSocket, expect

from clinic_client.call import Call, synthetic_media
from clinic_client.session import ConsultationSession
from server.consultations.models import Consultation
from server.db import session_scope
from server.devices.models import DeviceKind
from tests.clinic_client.room.conftest import Room, RoomAgentThread
from tests.server.web.pages import video_playing
from tests.support.axe import check_accessibility, screenshot
from tests.support.browser import launched_chromium, watched_page
from tests.support.loopback import eventually
from tests.support.room_endpoint import QUICK
from tests.support.signalling_scene import enrol_device

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 20_000
HOST_TAG = 1


async def on_screen(page: Page, name: str, timeout: float = WAIT_MS) -> None:
    """Wait until the page shows screen ``name``."""
    await page.wait_for_function("name => document.body.dataset.screen === name", arg=name, timeout=timeout)


async def look(page: Page, name: str) -> None:
    """The screen as the patient sees it: nothing to press, axe-clean, photographed."""
    assert await page.locator("button:visible, input:visible, a:visible").count() == 0
    await check_accessibility(page, name=f"room-{name}")
    await screenshot(page, "room", name)


async def heading(page: Page) -> str:
    """The visible heading."""
    return (await page.locator("section:not([hidden]) h1").inner_text()).strip()


async def frames_from_browser(call: Call, participant_id: str, more: int = 10) -> None:
    """The clinician keeps decoding new video frames (and some audio) from the room's browser."""
    start = call.received_frames(participant_id).video if participant_id in call.participants else 0
    await eventually(
        lambda: (
            participant_id in call.participants and call.received_frames(participant_id).video > start + more
        ),
        timeout=20,
        message=lambda: f"the clinician decoded no new video from the room (from {start})",
    )
    assert call.received_frames(participant_id).audio > 0


def local_time(room: Room, consultation_id: str) -> str:
    """The booked start as the room's screen shows it: "14:30" in local time."""
    with session_scope(room.scene.services.engine) as session:
        consultation = session.get(Consultation, consultation_id)
        assert consultation is not None
        start = consultation.scheduled_start
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    return start.astimezone().strftime("%H:%M")


async def test_the_room_screen_follows_its_consultation_with_nothing_pressed(
    room: Room, agent: RoomAgentThread
) -> None:
    received: list[str] = []

    def on_socket(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: received.append(str(payload)))

    async with launched_chromium() as browser, watched_page(browser) as (page, watch):
        page.on("websocket", on_socket)
        await page.goto(agent.launch_url)
        assert page.url == f"{agent.base_url}/"  # the launch code is gone from the address bar

        await on_screen(page, "idle")
        assert await heading(page) == "No appointment right now"
        await look(page, "idle")

        consultation_id = room.book()
        await on_screen(page, "booked")
        booked = f"Your appointment with Dr Host starts at {local_time(room, consultation_id)}"
        await expect(page.locator("#booked-title")).to_have_text(booked)
        await look(page, "booked")

        media = synthetic_media(source_tag=HOST_TAG)
        host = await ConsultationSession.join(
            room.server_url, room.scene.host_token(consultation_id), media=media, recovery=QUICK
        )
        try:
            await on_screen(page, "waiting")
            assert await heading(page) == "Please wait — your clinician will let you in"
            await host.wait_until(
                lambda s: any(p.id == room.participant_id and p.status == "waiting" for p in s.others)
            )
            await look(page, "waiting")

            await host.admit(room.participant_id)
            await on_screen(page, "call")
            tile = f'figure.remote-tile[data-participant="{host.state.participant_id}"]'
            await video_playing(page, f"{tile} video")
            await host.wait_until(lambda s: s.media_connected, timeout=20)
            assert host.call is not None
            await frames_from_browser(host.call, room.participant_id)
            await expect(page.locator(f"{tile} figcaption .name")).to_have_text("Dr Host")
            await video_playing(page, "#self-video")
            # "We can hear you": the fake microphone's beeps move the bar.
            await page.wait_for_function(
                "() => document.getElementById('mic-level').value > 0.3"
                " && document.getElementById('hearing').dataset.hearing === 'yes'",
                timeout=WAIT_MS,
            )
            await expect(page.locator("#hearing-text")).to_have_text("We can hear you")
            await screenshot(page, "room", "call-hearing")  # the bar as it moves (a beep, or between)
            await look(page, "call")

            # A reload in the middle of the call comes back into the call by itself.
            await page.reload()
            await on_screen(page, "call")
            await video_playing(page, f"{tile} video")
            await frames_from_browser(host.call, room.participant_id)
            await look(page, "call-after-reload")

            # The server restarts: the pictures stay with "Reconnecting — please wait" over
            # them; the new server knows nobody, so the room waits and is let in again.
            await asyncio.to_thread(room.stop_server)
            await page.wait_for_function(
                "() => document.body.dataset.reconnecting === 'yes'", timeout=WAIT_MS
            )
            await expect(page.locator("#call-banner")).to_have_text("Reconnecting — please wait")
            await look(page, "call-reconnecting")
            await asyncio.to_thread(room.start_server)
            await on_screen(page, "waiting", timeout=60_000)
            await host.wait_until(
                lambda s: any(p.id == room.participant_id and p.status == "waiting" for p in s.others),
                timeout=60,
            )
            await host.admit(room.participant_id)
            await on_screen(page, "call")
            await video_playing(page, f"{tile} video")
            await frames_from_browser(host.call, room.participant_id)

            await host.end("consultation complete")
            await on_screen(page, "ended")
            assert await heading(page) == "The appointment has ended"
            assert await page.locator("video").evaluate_all("vs => vs.every(v => !v.srcObject)")
            await look(page, "ended")
            await on_screen(page, "idle")
        finally:
            await host.close()
            media.stop()

        # A room endpoint that fails its device check is not ready (and says to tell staff).
        other = enrol_device(room.scene.services, "room-screen-02", DeviceKind.ROOM_ENDPOINT)
        with RoomAgentThread(room.server_url, other.id, other.key, profile="firewall-off") as failing:
            async with watched_page(browser) as (other_page, other_watch):
                await other_page.goto(failing.launch_url)
                await on_screen(other_page, "unavailable")
                assert await heading(other_page) == "This screen is not ready"
                await look(other_page, "unavailable")
                other_watch.assert_clean()

        # With the server gone, the screen says it is reconnecting.
        await asyncio.to_thread(room.stop_server)
        await on_screen(page, "reconnecting")
        assert await heading(page) == "Reconnecting — please wait"
        await look(page, "reconnecting")
        watch.assert_clean()

    # The page never saw a token: only states, and the media signalling of the call.
    secrets = set(agent.agent.secrets()) | room.secrets
    everything = "\n".join(received)
    assert secrets and not [s[:12] for s in secrets if s in everything]
    kinds = {json.loads(frame)["type"] for frame in received}
    assert kinds <= {"room.state", "offer", "answer", "ice", "pong", "error"}
