"""What hospital specialists asked for on the /join page (issue 10), in real Chromium.

* Checking their set-up early without spending the one-time link: the early screen with the
  day and time, a camera/microphone/speaker check, and Join only once the window opens.
* Choosing the camera, microphone and speaker (from enumerateDevices; Chromium here has two
  fake cameras, three microphones, three speakers), a speaker test tone made with WebAudio,
  switching mid-call with RTCRtpSender.replaceTrack and no renegotiation, and the choice
  remembered by the browser (device ids only).
* On a phone: the patient large, the self view small, the controls on screen; full screen
  on the patient's picture (Escape returns); the elapsed time.

One Chromium for the whole module (launched with two fake cameras); each test a fresh
context. axe-core and a screenshot (test-artifacts/join/) for every new screen and state.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from server.consultations.models import Invite
from server.db import session_scope
from tests.server.web.conftest import HOST_NAME, Booking, LiveServer, book
from tests.server.web.host import hosting
from tests.server.web.pages import (
    JOIN_BUTTON,
    RTC_PROBE,
    WAIT_MS,
    Frames,
    remote_video_playing,
    rtc_probe,
    tile_selector,
    wait_for_screen,
)
from tests.server.web.test_join_call import frames_flowing
from tests.support.axe import check_accessibility, screenshot
from tests.support.browser import CHROMIUM_ARGS, require_chromium, watched_page

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

AREA = "join"
DEVICES_KEY = "telemed.devices.v1"
# Chromium's fake capture devices: two cameras instead of one, so there is one to switch to.
TWO_CAMERAS = "--use-fake-device-for-media-stream=device-count=2"

DEVICES = """async () => (await navigator.mediaDevices.enumerateDevices())
  .map((d) => ({ kind: d.kind, label: d.label, id: d.deviceId }))"""
OPTIONS = "select => [...select.options].map((o) => ({ label: o.textContent, id: o.value }))"
# What the page's (latest) peer connection sends: the kind and device label of each track.
SENDING = """() => Object.fromEntries(window.__rtcConnections.at(-1).getSenders()
  .filter((s) => s.track).map((s) => [s.track.kind, s.track.label]))"""
SELF_VIEW = """() => { const s = document.getElementById('self-video').srcObject;
  return s ? Object.fromEntries(s.getTracks().map((t) => [t.kind, t.label])) : null }"""
STORAGE = """() => Object.fromEntries(Object.keys(localStorage).map((k) => [k, localStorage.getItem(k)]))"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the module, with two fake cameras."""
    binary = require_chromium()
    args = [TWO_CAMERAS if a == "--use-fake-device-for-media-stream" else a for a in CHROMIUM_ARGS]
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=binary, args=args, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def audit(page: Page, name: str) -> None:
    """axe-core on the screen as it is now, and its screenshot."""
    await check_accessibility(page, name=f"{AREA}/{name}")
    await screenshot(page, AREA, name)


async def focused_id(page: Page) -> str:
    return str(await page.evaluate("document.activeElement ? document.activeElement.id : ''"))


def scheduled_start(made: Booking) -> datetime:
    """The booking's start in this machine's time zone (Chromium shows local time)."""
    resp = made.http.get(f"/api/v1/consultations/{made.consultation_id}")
    assert resp.status_code == 200, resp.text
    return datetime.fromisoformat(resp.json()["scheduled_start"]).astimezone()


def used_at(live: LiveServer, made: Booking) -> datetime | None:
    with session_scope(live.services.engine) as session:
        row = session.get(Invite, made.invite_id)
        assert row is not None
        return row.used_at


def day_and_time(when: datetime) -> str:
    """As the page writes it in en-GB: "Sunday 6 December at 17:11"."""
    return f"{when:%A} {when.day} {when:%B} at {when:%H:%M}"


async def test_an_early_link_shows_the_day_and_a_setup_check_and_spends_nothing(
    live_server: LiveServer, browser: Browser
) -> None:
    made = book(live_server, starts_in=timedelta(days=1))
    try:
        start = scheduled_start(made)
        async with watched_page(browser) as (page, watch):
            paths: list[str] = []
            page.on("request", lambda request: paths.append(urlsplit(request.url).path))
            frames = Frames(page)
            await page.goto(made.invite_link)
            await wait_for_screen(page, "early")
            title = f"Your consultation is on {day_and_time(start)}"
            await expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()
            await expect(page.locator("#prejoin-lead")).to_have_text(
                f"You can join from {day_and_time(start - timedelta(minutes=15))}. "
                "You can check your camera, microphone and speaker now."
            )
            await expect(page.locator("#prejoin-note")).to_contain_text("This link has not been used yet")
            await expect(page.get_by_role("button", name=JOIN_BUTTON)).to_be_hidden()
            # The camera is not switched on by itself the day before.
            assert await page.evaluate(SELF_VIEW) is None
            await audit(page, "early-day-before")

            # By keyboard: the check is the next stop after the heading.
            await page.keyboard.press("Tab")
            assert await focused_id(page) == "check-button"
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("button", name="Stop the check")).to_be_focused()
            await page.wait_for_function("() => document.getElementById('self-video').videoWidth > 0")

            # The lists are what the browser reports (labels known once the camera is allowed).
            devices = await page.evaluate(DEVICES)
            for kind, select in (
                ("videoinput", "#camera-select"),
                ("audioinput", "#mic-select"),
                ("audiooutput", "#speaker-select"),
            ):
                listed = await page.eval_on_selector(select, OPTIONS)
                reported = [{"label": d["label"], "id": d["id"]} for d in devices if d["kind"] == kind]
                assert listed == reported, kind
            assert [o["label"] for o in await page.eval_on_selector("#camera-select", OPTIONS)] == [
                "fake_device_0",
                "fake_device_1",
            ]

            # The speaker test: a tone made in the page, sent to the chosen speaker.
            speaker = next(d for d in devices if d["label"] == "Fake Audio Output 1")
            await page.select_option("#speaker-select", label="Fake Audio Output 1")
            await expect(page.locator("#status")).to_have_text("Sound now plays through Fake Audio Output 1.")
            await page.get_by_role("button", name="Play a test sound").click()
            await expect(page.locator("#speaker-test")).to_have_attribute("data-playing", "true")
            tone = await page.evaluate(
                """() => { const a = document.getElementById('test-sound');
                  return { sink: a.sinkId, src: a.getAttribute('src'), paused: a.paused,
                           tracks: a.srcObject ? a.srcObject.getAudioTracks().length : 0 } }"""
            )
            assert tone == {"sink": speaker["id"], "src": None, "paused": False, "tracks": 1}
            await audit(page, "early-speaker-test")
            await expect(page.locator("#speaker-test")).not_to_have_attribute("data-playing", "true")

            # The browser keeps the choice: a device id, nothing else.
            stored = await page.evaluate(STORAGE)
            assert list(stored) == [DEVICES_KEY]
            assert json.loads(stored[DEVICES_KEY]) == {"audiooutput": speaker["id"]}

            await page.get_by_role("button", name="Stop the check").click()
            await expect(page.get_by_role("button", name="Check my camera and sound")).to_be_visible()
            assert await page.evaluate(SELF_VIEW) is None  # camera and microphone released

            # Nothing was spent: checked once, never redeemed, no socket.
            assert paths.count("/api/v1/invites/check") == 1
            assert "/api/v1/invites/redeem" not in paths
            assert frames.sockets == 0
            watch.assert_clean()
        assert used_at(live_server, made) is None

        # Closing the tab and opening the link again the next day still works.
        async with watched_page(browser) as (page, watch):
            await page.goto(made.invite_link)
            await wait_for_screen(page, "early")
            watch.assert_clean()
        assert used_at(live_server, made) is None
    finally:
        made.http.close()


async def test_join_comes_when_the_window_opens_and_only_join_spends_the_link(
    live_server: LiveServer, browser: Browser
) -> None:
    # Joining opens 15 minutes before the start: a few seconds from now.
    made = book(live_server, starts_in=timedelta(minutes=15, seconds=5))
    try:
        async with watched_page(browser) as (page, watch):
            frames = Frames(page)
            await page.goto(made.invite_link)
            await wait_for_screen(page, "early")
            await expect(page.get_by_role("button", name=JOIN_BUTTON)).to_be_hidden()

            await wait_for_screen(page, "setup")
            await expect(page.locator("#status")).to_have_text("You can join the consultation now.")
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Check your camera, microphone and speaker"
            )
            assert used_at(live_server, made) is None
            assert frames.sockets == 0

            await page.get_by_role("button", name=JOIN_BUTTON).click()
            await wait_for_screen(page, "waiting")
            assert used_at(live_server, made) is not None
            assert [m["type"] for m in frames.sent][:1] == ["hello"]
            watch.assert_clean()
    finally:
        made.http.close()


async def test_devices_chosen_before_joining_switch_mid_call_without_renegotiation_and_are_remembered(
    live_server: LiveServer, browser: Browser
) -> None:
    made = book(live_server)
    later = book(live_server)
    try:
        async with (
            hosting(live_server.ws_url, made.host_join_token) as host,
            watched_page(browser) as (page, watch),
        ):
            await page.add_init_script(RTC_PROBE)
            frames = Frames(page)
            await page.goto(made.invite_link)
            await wait_for_screen(page, "setup")
            devices = {d["label"]: d["id"] for d in await page.evaluate(DEVICES)}

            # Before joining: the second camera and another speaker (a headset, a dock).
            await page.select_option("#camera-select", label="fake_device_1")
            await expect(page.locator("#status")).to_have_text("Now using fake_device_1.")
            assert (await page.evaluate(SELF_VIEW))["video"] == "fake_device_1"
            await page.select_option("#speaker-select", label="Fake Audio Output 2")
            await page.get_by_role("button", name=JOIN_BUTTON).click()
            await host.sees(made.specialist_id, lambda p: p.status == "waiting")
            await host.session.admit(made.specialist_id)
            await wait_for_screen(page, "call")
            await remote_video_playing(page, host.participant_id)
            await host.session.wait_until(lambda s: s.media_connected, timeout=20)

            # The choices carried into the call: what is sent, and where the clinician is heard.
            assert (await page.evaluate(SENDING))["video"] == "fake_device_1"
            sink = await page.eval_on_selector(f"{tile_selector(host.participant_id)} video", "v => v.sinkId")
            assert sink == devices["Fake Audio Output 2"]

            # Mid-call, by keyboard: the settings dialog opens on the camera list.
            negotiated = offers_and_answers(frames)
            connections = (await rtc_probe(page))["peerConnections"]
            await page.get_by_role("button", name="Camera and sound settings").focus()
            await page.keyboard.press("Enter")
            dialog = page.get_by_role("dialog", name="Camera and sound settings")
            await expect(dialog).to_be_visible()
            assert await focused_id(page) == "camera-select"
            await audit(page, "call-device-dialog")

            await page.select_option("#camera-select", label="fake_device_0")
            await expect(page.locator("#status")).to_have_text("Now using fake_device_0.")
            await page.select_option("#mic-select", label="Fake Audio Input 2")
            await expect(page.locator("#status")).to_have_text("Now using Fake Audio Input 2.")
            assert await page.evaluate(SENDING) == {"video": "fake_device_0", "audio": "Fake Audio Input 2"}
            assert await page.evaluate(SELF_VIEW) == {"video": "fake_device_0", "audio": "Fake Audio Input 2"}
            # Swapped on the live connection: no new connection, no offer or answer.
            assert (await rtc_probe(page))["peerConnections"] == connections
            assert offers_and_answers(frames) == negotiated
            # …and the clinician keeps receiving picture and sound.
            await frames_flowing(host.call, made.specialist_id)

            await page.keyboard.press("Escape")
            await expect(dialog).to_be_hidden()
            assert await focused_id(page) == "devices-button"

            # The browser remembers the three devices by id, and nothing else at all.
            stored = await page.evaluate(STORAGE)
            assert list(stored) == [DEVICES_KEY]
            assert json.loads(stored[DEVICES_KEY]) == {
                "videoinput": devices["fake_device_0"],
                "audioinput": devices["Fake Audio Input 2"],
                "audiooutput": devices["Fake Audio Output 2"],
            }
            watch.assert_clean()

            # Another consultation in the same browser starts with the same camera, microphone and speaker.
            second = await page.context.new_page()
            await second.goto(later.invite_link)
            await wait_for_screen(second, "setup")
            assert await second.evaluate(SELF_VIEW) == {
                "video": "fake_device_0",
                "audio": "Fake Audio Input 2",
            }
            await expect(second.locator("#camera-select")).to_have_value(devices["fake_device_0"])
            await expect(second.locator("#mic-select")).to_have_value(devices["Fake Audio Input 2"])
            await expect(second.locator("#speaker-select")).to_have_value(devices["Fake Audio Output 2"])
    finally:
        made.http.close()
        later.http.close()


def offers_and_answers(frames: Frames) -> list[dict[str, object]]:
    return [m for m in frames.sent + frames.received if m["type"] in ("offer", "answer")]


CONTROLS = ("Mute microphone", "Turn camera off", "Camera and sound settings", "Leave consultation")


def area(box: dict[str, float] | None) -> float:
    assert box is not None
    return box["width"] * box["height"]


async def test_on_a_phone_the_patient_is_large_the_controls_fit_and_full_screen_and_elapsed_time_work(
    live_server: LiveServer, browser: Browser
) -> None:
    made = book(live_server)
    try:
        async with (
            hosting(live_server.ws_url, made.host_join_token) as host,
            watched_page(browser, viewport=(390, 844)) as (page, watch),
        ):
            await page.goto(made.invite_link)
            await wait_for_screen(page, "setup")
            await audit(page, "setup-phone")
            await page.get_by_role("button", name=JOIN_BUTTON).click()
            await host.sees(made.specialist_id, lambda p: p.status == "waiting")
            await host.session.admit(made.specialist_id)
            await wait_for_screen(page, "call")
            await remote_video_playing(page, host.participant_id)
            # The announcement ("let you in") is showing: the tallest the screen gets.
            await expect(page.locator("#status")).not_to_be_empty()
            await page.evaluate("window.scrollTo(0, 0)")

            # The self view is small beside the patient (less than a quarter of the picture) …
            patient = await page.locator(f"{tile_selector(host.participant_id)} video").bounding_box()
            self_view = await page.locator("#self-video").bounding_box()
            assert area(self_view) < area(patient) / 4, (self_view, patient)
            # … and every control is on the screen without scrolling.
            assert await page.evaluate("window.scrollY") == 0
            assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            for name in CONTROLS:
                box = await page.get_by_role("button", name=name).bounding_box()
                assert box is not None, name
                assert box["x"] >= 0 and box["y"] >= 0, (name, box)
                assert box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844, (name, box)
                assert box["height"] >= 44, (name, box)
            await audit(page, "call-phone-layout")

            # The elapsed time is shown, and runs.
            elapsed = page.locator("#elapsed")
            await expect(elapsed).to_have_text(re.compile(r"^\d+:\d\d$"))
            first = await elapsed.text_content()
            await expect(elapsed).not_to_have_text(first or "", timeout=WAIT_MS)

            # Full screen on the patient's picture, by keyboard; Escape returns.
            tile = page.locator(tile_selector(host.participant_id))
            await page.get_by_role("button", name=f"Show {HOST_NAME} full screen").focus()
            await page.keyboard.press("Enter")
            await page.wait_for_function(
                "sel => document.fullscreenElement === document.querySelector(sel)",
                arg=tile_selector(host.participant_id),
            )
            await expect(page.locator("#status")).to_have_text(
                f"Showing {HOST_NAME} full screen. Press Escape to go back."
            )
            await expect(tile.get_by_role("button", name="Exit full screen")).to_be_visible()
            await audit(page, "call-fullscreen")
            await page.keyboard.press("Escape")
            await page.wait_for_function("() => document.fullscreenElement === null")
            await expect(tile.get_by_role("button", name=f"Show {HOST_NAME} full screen")).to_be_visible()

            # A reload carries on counting from when they were let in, not from zero.
            before = seconds(await elapsed.text_content())
            await page.reload()
            await wait_for_screen(page, "call")
            await expect(elapsed).not_to_have_text("0:00")
            assert seconds(await elapsed.text_content()) >= before
            watch.assert_clean(allow=("WebSocket connection",))
    finally:
        made.http.close()


def seconds(text: str | None) -> int:
    """ "1:05" -> 65, "1:02:05" -> 3725."""
    assert text is not None
    total = 0
    for part in text.split(":"):
        total = total * 60 + int(part)
    return total
