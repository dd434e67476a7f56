"""The specialist's page in real Chromium against a live server, the host on clinic_client (aiortc)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import av
import pytest
from playwright.async_api import Browser, Page, expect

from clinic_client.call import Call
from clinic_client.signalling import Participant, RequestRefused
from tests.server.web.conftest import (
    HOST_NAME,
    PATIENT_NAME,
    PRISON_NUMBER,
    SPECIALIST_NAME,
    Booking,
    LiveServer,
)
from tests.server.web.host import Host, hosting
from tests.server.web.pages import (
    QUALITY_TEXT,
    RTC_PROBE,
    WAIT_MS,
    Frames,
    open_and_join,
    remote_video_playing,
    rtc_probe,
    screen,
    tile_selector,
    wait_for_screen,
)
from tests.support.browser import PageWatch, watched_page
from tests.support.loopback import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def luminance(frame: av.VideoFrame) -> float:
    """Mean brightness of a frame, 0 (black) to 255; Chromium's green fake camera is about 80."""
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    data = bytes(plane)
    total = 0
    for y in range(rgb.height):
        row = data[y * plane.line_size : y * plane.line_size + rgb.width * 3]
        total += 299 * sum(row[0::3]) + 587 * sum(row[1::3]) + 114 * sum(row[2::3])
    return total / 1000 / (rgb.width * rgb.height)


def brightness(call: Call, participant_id: str) -> float:
    """Brightness of the latest frame the host decoded from a participant (-1 before the first)."""
    frame = call.latest_frame(participant_id, "video")
    return luminance(frame) if isinstance(frame, av.VideoFrame) else -1.0


async def frames_flowing(call: Call, participant_id: str) -> None:
    """The host keeps decoding new video frames (and some audio) from the browser."""
    await eventually(
        lambda: call.received_frames(participant_id).video > 0,
        timeout=20,
        message="the host decoded no video from the browser",
    )
    seen = call.received_frames(participant_id)
    await eventually(
        lambda: call.received_frames(participant_id).video > seen.video + 5,
        timeout=20,
        message="the browser's video stopped reaching the host",
    )
    assert call.received_frames(participant_id).audio > 0


def waiting(p: Participant) -> bool:
    return p.status == "waiting"


def admitted(p: Participant) -> bool:
    return p.status == "admitted"


@asynccontextmanager
async def admitted_call(
    live: LiveServer, booking: Booking, browser: Browser
) -> AsyncIterator[tuple[Host, Call, Page, PageWatch, Frames]]:
    """Host online, specialist's page in the waiting room, admitted, media connected."""
    async with hosting(live.ws_url, booking.host_join_token) as host, watched_page(browser) as (page, watch):
        frames = Frames(page)
        await open_and_join(page, booking.invite_link)
        await host.sees(booking.specialist_id, waiting)
        await wait_for_screen(page, "waiting")
        await host.session.admit(booking.specialist_id)
        await wait_for_screen(page, "call")
        await remote_video_playing(page, host.participant_id)
        await host.session.wait_until(lambda s: s.media_connected, timeout=20)
        yield host, host.call, page, watch, frames


async def test_specialist_waits_is_admitted_and_media_flows_both_ways(
    live_server: LiveServer, booking: Booking, chromium: Browser, tmp_path: Path
) -> None:
    specialist = booking.specialist_id
    async with hosting(live_server.ws_url, booking.host_join_token) as host:
        async with watched_page(chromium) as (page, watch):
            frames = Frames(page)
            await open_and_join(page, booking.invite_link)

            # The waiting room, and the invite token gone from the address bar.
            await expect(page.get_by_role("heading", name="You are in the waiting room")).to_be_visible(
                timeout=WAIT_MS
            )
            await expect(page.get_by_text("The clinician will let you in shortly.")).to_be_visible()
            await expect(page.locator("#detail-name")).to_have_text(SPECIALIST_NAME)
            await expect(page.locator("#detail-host")).to_have_text(HOST_NAME)
            assert page.url == f"{live_server.url}/join"
            assert [m["type"] for m in frames.sent][:1] == ["hello"]

            # Nobody is auto-admitted: the host sees them waiting, the hub itself confirms
            # they are waiting, and the page was never told it was admitted.
            joined = await host.sees(specialist, waiting)
            assert joined.name == SPECIALIST_NAME
            with pytest.raises(RequestRefused) as refused:
                await host.session.return_to_waiting(specialist)
            assert refused.value.code == "invalid_state"
            assert '"waiting"' in refused.value.message
            assert await screen(page) == "waiting"
            assert "admitted" not in frames.types()
            # The microphone meter moves with Chromium's fake microphone (it beeps).
            meter_moves = "() => document.getElementById('mic-meter').value > 0"
            await page.wait_for_function(meter_moves, timeout=WAIT_MS)
            await page.screenshot(path=str(tmp_path / "waiting-room.png"), full_page=True)

            # The host admits; the session connects media to them (the host offers).
            await host.session.admit(specialist)
            call = host.call

            await wait_for_screen(page, "call")
            await expect(page.get_by_role("heading", name="Consultation in progress")).to_be_visible()
            tile = page.locator(tile_selector(host.participant_id))
            await expect(tile.locator(".name")).to_have_text(HOST_NAME)
            await expect(page.locator("#status")).to_have_text(
                "The clinician has let you in. You are now in the consultation."
            )

            # Browser side: the host's synthetic video plays and keeps playing.
            await remote_video_playing(page, host.participant_id)
            # aiortc side: frames decoded from Chromium's fake camera and microphone.
            await host.session.wait_until(lambda s: s.media_connected, timeout=20)
            await frames_flowing(call, specialist)
            frame = call.latest_frame(specialist, "video")
            assert isinstance(frame, av.VideoFrame) and frame.width > 0 and frame.height > 0

            # Connection quality from getStats, in words.
            # (The level depends on the machine's load; loopback itself is "Good".)
            await expect(tile.locator(".quality")).to_have_text(QUALITY_TEXT, timeout=WAIT_MS)
            await page.screenshot(path=str(tmp_path / "in-call.png"), full_page=True)

            # The specialist never sees anything about the patient.
            text = await page.locator("body").inner_text()
            assert PATIENT_NAME not in text
            assert PRISON_NUMBER not in text
            watch.assert_clean()


async def test_controls_work_from_the_keyboard_and_reach_the_clinician(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    specialist = booking.specialist_id
    async with admitted_call(live_server, booking, chromium) as (host, call, page, watch, _):
        await eventually(
            lambda: brightness(call, specialist) > 45,
            timeout=20,
            message=lambda: f"the host does not see the camera (brightness {brightness(call, specialist)})",
        )
        # Focus starts on the heading; Tab reaches the four buttons in order (the tile's
        # "Full screen" button first: it belongs to the picture above them).
        order = []
        for _ in range(5):
            await page.keyboard.press("Tab")
            focused = "document.activeElement.id || document.activeElement.textContent"
            order.append(await page.evaluate(focused))
        assert order == ["Full screen", "mic-button", "camera-button", "devices-button", "leave-button"]

        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Shift+Tab")  # back to the camera button
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("button", name="Turn camera on")).to_be_focused()
        await expect(page.locator("#self-state")).to_have_text("Camera off")
        await expect(page.locator("#status")).to_have_text("Your camera is off. Others cannot see you.")
        # What the clinician sees: black frames instead of the camera.
        await eventually(
            lambda: brightness(call, specialist) < 30,
            timeout=20,
            message=lambda: f"the host still sees the camera (brightness {brightness(call, specialist)})",
        )

        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Space")
        await expect(page.get_by_role("button", name="Unmute microphone")).to_be_focused()
        await expect(page.locator("#self-state")).to_have_text("Microphone off · Camera off")
        assert await page.evaluate(
            "document.getElementById('self-video').srcObject.getAudioTracks().every(t => !t.enabled)"
        )
        await page.wait_for_function("() => document.getElementById('mic-meter').value === 0")

        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")
        await expect(page.locator("#self-state")).to_have_text("")
        await eventually(
            lambda: brightness(call, specialist) > 45,
            timeout=20,
            message=lambda: f"the camera did not come back (brightness {brightness(call, specialist)})",
        )
        watch.assert_clean()


async def test_leaving_ends_the_call_for_the_clinician_and_rejoining_waits_again(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    specialist = booking.specialist_id
    async with admitted_call(live_server, booking, chromium) as (host, call, page, watch, frames):
        await page.get_by_role("button", name="Leave consultation").click()
        await (
            page.get_by_role("dialog", name="Leave the consultation?")
            .get_by_role("button", name="Leave", exact=True)
            .click()
        )

        await wait_for_screen(page, "message", message="left")
        await expect(page.get_by_role("heading", name="You have left the consultation")).to_be_visible()
        await host.loses(specialist)
        assert [m["type"] for m in frames.sent].count("leave") == 1
        # Camera and microphone released.
        assert await page.evaluate("document.getElementById('self-video').srcObject") is None

        # Rejoining (the invite was spent; the page kept its join token) lands in the waiting room.
        await page.get_by_role("button", name="Rejoin").click()
        await wait_for_screen(page, "waiting")
        await host.sees(specialist, waiting)
        assert "resume_token" not in frames.hellos()[-1]
        watch.assert_clean()


async def test_a_dropped_connection_resumes_and_the_call_carries_on(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    specialist = booking.specialist_id
    async with admitted_call(live_server, booking, chromium) as (host, call, page, watch, frames):
        await page.get_by_role("button", name="Mute microphone").focus()
        assert live_server.proxy.cut() >= 1  # the page's socket, as if the network dropped

        await expect(page.locator("#status")).to_have_text("You are connected again.", timeout=WAIT_MS)
        await host.sees(specialist, lambda p: p.connected and admitted(p))
        # The host saw them drop and come back, admitted all along.
        assert host.went_through(
            specialist,
            lambda p: p.connected and admitted(p),
            lambda p: not p.connected and admitted(p),
            lambda p: p.connected and admitted(p),
        )

        hellos = frames.hellos()
        assert len(hellos) == 2
        assert hellos[1]["resume_token"] == frames.welcomes()[0]["resume_token"]
        assert frames.welcomes()[-1]["resumed"] is True
        assert frames.welcomes()[-1]["status"] == "admitted"
        assert await screen(page) == "call"
        # Whoever was using the keyboard is not thrown back to the top of the page.
        assert await page.evaluate("document.activeElement.id") == "mic-button"

        # Media went on both ways.
        await remote_video_playing(page, host.participant_id)
        await frames_flowing(call, specialist)
        # The dropped socket is the one thing Chromium may log.
        watch.assert_clean(allow=("WebSocket connection",))


async def test_a_denied_specialist_is_told_and_never_gets_an_offer(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    specialist = booking.specialist_id
    async with hosting(live_server.ws_url, booking.host_join_token) as host:
        async with watched_page(chromium) as (page, watch):
            await page.add_init_script(RTC_PROBE)
            frames = Frames(page)
            await open_and_join(page, booking.invite_link)
            await host.sees(specialist, waiting)
            await wait_for_screen(page, "waiting")

            # The hub refuses to relay an offer to someone still waiting…
            with pytest.raises(RequestRefused) as refused:
                await host.session.client.request(
                    "offer", to=specialist, sdp="v=0\r\n", connection_id="probe-connection-1"
                )
            assert refused.value.code == "not_admitted"
            # …and the host turns them away.
            await host.session.deny(specialist, reason="Wrong clinic today")

            await wait_for_screen(page, "message", message="denied")
            await expect(page.get_by_role("heading", name="The clinician did not let you in")).to_be_visible()
            await expect(page.locator("#message-hint")).to_contain_text("Wrong clinic today")
            await expect(page.locator("#message-action")).to_be_hidden()

            assert not {"offer", "answer", "ice", "admitted"} & set(frames.types())
            assert await rtc_probe(page) == {"peerConnections": 0, "remoteDescriptions": 0}
            # Camera and microphone released.
            assert await page.evaluate("document.getElementById('self-video').srcObject") is None
            watch.assert_clean()


async def test_sent_back_to_the_waiting_room_and_let_in_again(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    specialist = booking.specialist_id
    async with admitted_call(live_server, booking, chromium) as (host, call, page, watch, _):
        await host.session.return_to_waiting(specialist)

        await wait_for_screen(page, "waiting")
        await expect(page.locator("#waiting-lead")).to_have_text(
            "The clinician has moved you back to the waiting room. They will let you in again shortly."
        )
        await expect(page.locator(tile_selector(host.participant_id))).to_have_count(0)

        await host.session.admit(specialist)
        await wait_for_screen(page, "call")
        await remote_video_playing(page, host.participant_id)
        await frames_flowing(call, specialist)
        watch.assert_clean()


async def test_when_the_clinician_leaves_the_specialist_waits_and_when_it_ends_is_told(
    live_server: LiveServer, booking: Booking, chromium: Browser, tmp_path: Path
) -> None:
    async with admitted_call(live_server, booking, chromium) as (host, _call, page, watch, _):
        await host.session.leave()
        await wait_for_screen(page, "waiting")
        await expect(page.locator("#waiting-lead")).to_contain_text("The clinician has left the call")

        # The clinician comes back and ends the consultation for everyone.
        async with hosting(live_server.ws_url, booking.host_join_token) as again:
            await again.session.end("Consultation complete")
            await wait_for_screen(page, "message", message="ended")
            await expect(page.get_by_role("heading", name="The consultation has ended")).to_be_visible()
            assert await page.evaluate("document.getElementById('self-video').srcObject") is None
            await page.screenshot(path=str(tmp_path / "ended.png"), full_page=True)
        watch.assert_clean()


async def test_arriving_before_the_clinician_waits_and_is_told_when_they_are_online(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    specialist = booking.specialist_id
    async with watched_page(chromium) as (page, watch):
        await open_and_join(page, booking.invite_link)
        await wait_for_screen(page, "waiting")
        presence = page.locator("#host-presence")
        await expect(presence).to_have_text("The clinician has not joined yet.")

        async with hosting(live_server.ws_url, booking.host_join_token) as host:
            await expect(presence).to_have_text("The clinician is online.")
            # The host finds them waiting (in its welcome): arriving first admits nobody.
            await host.sees(specialist, waiting)
            assert await screen(page) == "waiting"
            await host.session.admit(specialist)
            await wait_for_screen(page, "call")
            await remote_video_playing(page, host.participant_id)
        watch.assert_clean()
