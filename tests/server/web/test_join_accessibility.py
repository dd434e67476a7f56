"""Every screen of the specialist's page passes axe-core (no serious or critical violation),
works by keyboard alone, and is photographed to ``test-artifacts/join/`` for review.

Real Chromium, the page as the live server serves it (strict CSP with Trusted Types), axe-core
from npm evaluated through the DevTools protocol (tests/support/axe.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.server.web.conftest import HOST_NAME, Booking, LiveServer, book
from tests.server.web.host import Host, hosting
from tests.server.web.pages import (
    QUALITY_TEXT,
    WAIT_MS,
    open_and_join,
    remote_video_playing,
    tile_selector,
    wait_for_screen,
)
from tests.support.axe import check_accessibility, screenshot
from tests.support.browser import PageWatch, launched_chromium, watched_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AREA = "join"
# Chromium logs a refused HTTP answer or a refused connection itself; the page handles both.
HTTP_ERROR_LOG = "Failed to load resource"
REFUSED_LOG = "net::ERR_CONNECTION_REFUSED"

# Holds the browser's answer to getUserMedia until the test lets it go, as a person who has
# not yet clicked "Allow" would (the page shows its "Allow your camera" screen after 400 ms).
HOLD_CAMERA = """
(() => {
  const media = navigator.mediaDevices;
  const original = media.getUserMedia.bind(media);
  let release;
  const allowed = new Promise((resolve) => { release = resolve; });
  window.__allowCamera = () => release();
  media.getUserMedia = async (constraints) => { await allowed; return original(constraints); };
})();
"""


async def audit(page: Page, screen_name: str) -> None:
    """axe-core on the screen as it is now, and its screenshot."""
    await check_accessibility(page, name=f"{AREA}/{screen_name}")
    await screenshot(page, AREA, screen_name)


async def heading(page: Page, name: str) -> None:
    await expect(page.get_by_role("heading", name=name, level=1)).to_be_visible(timeout=WAIT_MS)


async def focused_id(page: Page) -> str:
    value = await page.evaluate("document.activeElement ? document.activeElement.id : ''")
    return str(value)


async def focus_is_visible(page: Page) -> bool:
    """The focused element draws a focus ring (an outline at least 2px wide)."""
    visible = await page.evaluate(
        """() => {
          const s = getComputedStyle(document.activeElement);
          return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
        }"""
    )
    return bool(visible)


@asynccontextmanager
async def in_call(
    live: LiveServer, booking: Booking, browser: Browser, *, viewport: tuple[int, int] = (1280, 800)
) -> AsyncIterator[tuple[Host, Page, PageWatch]]:
    """The specialist's page admitted by the host, the host's video playing in it."""
    async with (
        hosting(live.ws_url, booking.host_join_token) as host,
        watched_page(browser, viewport=viewport) as (page, watch),
    ):
        await open_and_join(page, booking.invite_link)
        await host.sees(booking.specialist_id, lambda p: p.status == "waiting")
        await wait_for_screen(page, "waiting")
        await host.session.admit(booking.specialist_id)
        await wait_for_screen(page, "call")
        await remote_video_playing(page, host.participant_id)
        yield host, page, watch


async def test_the_checker_finds_a_violation_on_the_real_page(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    # The page's CSP is in force (a script element's code is refused), axe still runs,
    # and a button stripped of its label is reported by rule, impact and element.
    async with watched_page(chromium) as (page, _watch):
        await open_and_join(page, booking.invite_link)
        await wait_for_screen(page, "waiting")
        refused = await page.evaluate(
            """() => {
              try { document.createElement('script').textContent = 'window.__ran = true'; }
              catch (err) { return err.name; }
              return 'allowed';
            }"""
        )
        assert refused == "TypeError"  # Trusted Types: no script from a string

        await page.evaluate("document.getElementById('mic-button').textContent = ''")
        with pytest.raises(pytest.fail.Exception) as failed:
            await check_accessibility(page, name=f"{AREA}/self-test-unlabelled-button")
        message = str(failed.value)
        assert "button-name (critical)" in message
        assert "#mic-button" in message

        # An allowed rule (with its reason) is reported but does not fail the check.
        violations = await check_accessibility(
            page, name=f"{AREA}/self-test-allowed", allow={"button-name": "self-test of the allow list"}
        )
        assert [v.rule for v in violations if v.fails] == ["button-name"]


async def test_loading_and_camera_screens(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    check_seen = asyncio.Event()
    answer = asyncio.Event()

    async def slow_check(route: Route) -> None:
        check_seen.set()
        await answer.wait()
        await route.continue_()

    async with watched_page(chromium) as (page, watch):
        await page.add_init_script(HOLD_CAMERA)
        await page.route("**/api/v1/invites/check", slow_check)
        await page.goto(booking.invite_link)

        # The invite is being checked.
        await asyncio.wait_for(check_seen.wait(), WAIT_MS / 1000)
        await wait_for_screen(page, "loading")
        await heading(page, "Joining your consultation")
        await expect(page.locator("#loading-text")).to_have_text("Checking your invite link…")
        await audit(page, "loading")
        answer.set()

        # The browser is asking for the camera and microphone.
        await wait_for_screen(page, "camera")
        await heading(page, "Allow your camera and microphone")
        await audit(page, "camera")

        await page.evaluate("window.__allowCamera()")
        await wait_for_screen(page, "setup")
        await heading(page, "Check your camera, microphone and speaker")
        await expect(page.locator("#camera-select option")).to_have_count(1)
        await audit(page, "setup")
        watch.assert_clean()


async def test_early_screen(live_server: LiveServer, chromium: Browser) -> None:
    made = book(live_server, starts_in=timedelta(hours=2))
    try:
        async with watched_page(chromium) as (page, watch):
            await page.goto(made.invite_link)
            await wait_for_screen(page, "early")
            await expect(page.locator("#prejoin-title")).to_contain_text("Your consultation is ")
            await audit(page, "early")
            await page.get_by_role("button", name="Check my camera and sound").click()
            await expect(page.locator("#self-video")).to_be_visible()
            await expect(page.locator("#speaker-select option")).not_to_have_count(0)
            await audit(page, "early-checking")
            watch.assert_clean()
    finally:
        made.http.close()


async def test_waiting_room_and_call_screens(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with watched_page(chromium) as (page, watch):
        await open_and_join(page, booking.invite_link)
        await wait_for_screen(page, "waiting")
        await heading(page, "You are in the waiting room")
        await expect(page.locator("#host-presence")).to_have_text("The clinician has not joined yet.")
        await audit(page, "waiting-before-clinician")

        async with hosting(live_server.ws_url, booking.host_join_token) as host:
            await expect(page.locator("#host-presence")).to_have_text("The clinician is online.")
            await host.sees(booking.specialist_id, lambda p: p.status == "waiting")
            await page.wait_for_function("() => document.getElementById('mic-meter').value > 0")
            await audit(page, "waiting")

            await host.session.admit(booking.specialist_id)
            await wait_for_screen(page, "call")
            await heading(page, "Consultation in progress")
            await remote_video_playing(page, host.participant_id)
            # The connection line is part of the screen: check it once it is there.
            quality = page.locator(tile_selector(host.participant_id)).locator(".quality")
            await expect(quality).to_have_text(QUALITY_TEXT, timeout=WAIT_MS)
            await audit(page, "call")
            # On a 1280x800 desktop window the controls are on screen without scrolling, even
            # with the announcement showing; Leave is on the same row as Mute, set apart.
            await page.evaluate("window.scrollTo(0, 0)")
            mute = await page.get_by_role("button", name="Mute microphone").bounding_box()
            leave = await page.get_by_role("button", name="Leave consultation").bounding_box()
            assert mute is not None and leave is not None
            assert leave["y"] + leave["height"] <= 800, leave
            assert leave["y"] == mute["y"] and leave["x"] - (mute["x"] + mute["width"]) > 400, (mute, leave)

            # Camera and microphone off: the buttons change their words and look.
            await page.get_by_role("button", name="Mute microphone").click()
            await page.get_by_role("button", name="Turn camera off").click()
            await expect(page.locator("#self-state")).to_have_text("Microphone off · Camera off")
            await audit(page, "call-muted")
        watch.assert_clean()


async def test_waiting_room_and_call_on_a_phone(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with watched_page(chromium, viewport=(390, 844)) as (page, watch):
        await open_and_join(page, booking.invite_link)
        await wait_for_screen(page, "waiting")
        await audit(page, "waiting-phone")
        async with hosting(live_server.ws_url, booking.host_join_token) as host:
            await host.sees(booking.specialist_id, lambda p: p.status == "waiting")
            await host.session.admit(booking.specialist_id)
            await wait_for_screen(page, "call")
            await remote_video_playing(page, host.participant_id)
            await audit(page, "call-phone")
        watch.assert_clean()


async def test_message_screens_for_links_that_do_not_work(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with watched_page(chromium) as (page, watch):
        await page.goto(f"{live_server.url}/join#inv_not-a-real-invite-token")
        await wait_for_screen(page, "message", message="invalid_link")
        await heading(page, "This link does not work")
        await audit(page, "message-invalid-link")
        watch.assert_clean(allow=(HTTP_ERROR_LOG,))

    spent = booking.http.post("/api/v1/invites/redeem", json={"token": booking.invite_token})
    assert spent.status_code == 200, spent.text
    # A fresh tab: in the same one, a link differing only in its fragment would not reload the page.
    async with watched_page(chromium) as (page, watch):
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="invite_used")
        await heading(page, "This invite link has already been used")
        await audit(page, "message-invite-used")
        watch.assert_clean(allow=(HTTP_ERROR_LOG,))


async def test_message_screen_for_an_unreachable_service(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async def network_down(route: Route) -> None:
        await route.abort("connectionrefused")

    async with watched_page(chromium) as (page, watch):
        await page.route("**/api/v1/invites/check", network_down)
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="unreachable")
        await heading(page, "We cannot reach the consultation service")
        await expect(page.get_by_role("button", name="Try again")).to_be_visible()
        await audit(page, "message-unreachable")
        watch.assert_clean(allow=(REFUSED_LOG,))


async def test_message_screen_for_a_refused_camera(live_server: LiveServer, booking: Booking) -> None:
    async with launched_chromium(deny_media=True) as browser, watched_page(browser) as (page, watch):
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="camera_refused")
        await heading(page, "Your camera and microphone are blocked")
        await expect(page.get_by_role("button", name="Try again")).to_be_visible()
        await audit(page, "message-camera-refused")
        watch.assert_clean()


async def test_message_screen_when_turned_away(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with (
        hosting(live_server.ws_url, booking.host_join_token) as host,
        watched_page(chromium) as (page, watch),
    ):
        await open_and_join(page, booking.invite_link)
        await host.sees(booking.specialist_id, lambda p: p.status == "waiting")
        await host.session.deny(booking.specialist_id, reason="Wrong clinic today")
        await wait_for_screen(page, "message", message="denied")
        await heading(page, "The clinician did not let you in")
        await expect(page.locator("#message-hint")).to_contain_text("Wrong clinic today")
        await audit(page, "message-denied")
        watch.assert_clean()


async def test_message_screen_when_the_consultation_ends(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with in_call(live_server, booking, chromium) as (host, page, watch):
        await host.session.end("Consultation complete")
        await wait_for_screen(page, "message", message="ended")
        await heading(page, "The consultation has ended")
        await audit(page, "message-ended")
        watch.assert_clean()


async def test_leave_and_rejoin_by_keyboard_alone(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with in_call(live_server, booking, chromium) as (host, page, watch):
        # Focus starts on the screen's heading; the skip link sits just before it and shows
        # itself when focused.
        assert await focused_id(page) == "call-title"
        await page.keyboard.press("Shift+Tab")
        skip = page.get_by_role("link", name="Skip to main content")
        await expect(skip).to_be_focused()
        box = await skip.bounding_box()
        assert box is not None and box["x"] >= 0 and box["y"] >= 0, box
        assert await focus_is_visible(page)

        # Tab through the picture's Full screen button and the controls to Leave; each shows
        # where the focus is. The heading is focusable only by script (tabindex=-1), so Tab
        # goes on to the buttons.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("button", name=f"Show {HOST_NAME} full screen")).to_be_focused()
        for expected in ("mic-button", "camera-button", "devices-button", "leave-button"):
            await page.keyboard.press("Tab")
            assert await focused_id(page) == expected
            assert await focus_is_visible(page), expected

        # Leave asks first, with the safe answer focused; Escape is the safe answer too.
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Leave the consultation?")
        await expect(dialog).to_be_visible()
        assert await focused_id(page) == "leave-stay"
        assert await focus_is_visible(page)
        await audit(page, "call-leave-dialog")
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        assert await focused_id(page) == "leave-button"
        assert await page.evaluate("document.body.dataset.screen") == "call"
        await page.keyboard.press("Enter")
        await page.keyboard.press("Enter")  # "Stay in the consultation"
        await expect(dialog).to_be_hidden()
        assert await page.evaluate("document.body.dataset.screen") == "call"
        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")
        assert await focused_id(page) == "leave-confirm"
        await page.keyboard.press("Enter")

        await wait_for_screen(page, "message", message="left")
        await heading(page, "You have left the consultation")
        await host.loses(booking.specialist_id)
        assert await focused_id(page) == "message-title"
        await audit(page, "message-left")

        # Rejoin is the next stop, and Space presses it.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("button", name="Rejoin")).to_be_focused()
        assert await focus_is_visible(page)
        await page.keyboard.press("Space")
        await wait_for_screen(page, "waiting")
        await host.sees(booking.specialist_id, lambda p: p.status == "waiting")
        assert await focused_id(page) == "room-title"

        # In the waiting room, Tab reaches the same four controls.
        order = []
        for _ in range(4):
            await page.keyboard.press("Tab")
            order.append(await focused_id(page))
        assert order == ["mic-button", "camera-button", "devices-button", "leave-button"]
        watch.assert_clean()


async def test_try_again_by_keyboard_recovers_from_an_unreachable_service(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async def network_down(route: Route) -> None:
        await route.abort("connectionrefused")

    async with (
        hosting(live_server.ws_url, booking.host_join_token) as host,
        watched_page(chromium) as (page, watch),
    ):
        await page.route("**/api/v1/invites/check", network_down)
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="unreachable")
        assert await focused_id(page) == "message-title"

        await page.unroute("**/api/v1/invites/check")  # the network is back
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("button", name="Try again")).to_be_focused()
        await page.keyboard.press("Enter")
        await wait_for_screen(page, "setup")
        # Join is reached by keyboard after the device lists and the speaker test.
        order = []
        for _ in range(5):
            await page.keyboard.press("Tab")
            order.append(await focused_id(page))
        assert order == ["camera-select", "mic-select", "speaker-select", "speaker-test", "join-button"]
        await page.keyboard.press("Enter")
        await wait_for_screen(page, "waiting")
        await host.sees(booking.specialist_id, lambda p: p.status == "waiting")
        watch.assert_clean(allow=(REFUSED_LOG,))
