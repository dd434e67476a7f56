"""What the specialist reads when joining cannot go ahead: each state in plain words."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, expect
from sqlmodel import select

from server.consultations.models import Invite
from server.db import session_scope, utcnow
from tests.server.web.conftest import (
    HOST_ESTABLISHMENT,
    HOST_NAME,
    SUPPORT_CONTACT,
    SUPPORT_PHONE,
    Booking,
    LiveServer,
    book,
)
from tests.server.web.host import hosting
from tests.server.web.pages import Frames, open_and_join, screen, wait_for_screen
from tests.support.browser import launched_chromium, watched_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def expect_heading(page: Page, name: str) -> None:
    await expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()


INVITED_BY = f"You were invited by {HOST_NAME}, {HOST_ESTABLISHMENT}."


async def expect_help(page: Page, *, inviter: bool) -> None:
    """The message screen says who can help: the configured contact, and who sent the link if known."""
    help_box = page.get_by_role("heading", name="Who can help", level=2)
    await expect(help_box).to_be_visible()
    await expect(page.locator("#help-contact-text")).to_have_text(f"For help, contact: {SUPPORT_CONTACT}")
    phone = page.get_by_role("link", name=SUPPORT_PHONE)
    await expect(phone).to_have_attribute("href", "tel:+441632960123")
    if inviter:
        await expect(page.locator("#help-inviter")).to_have_text(INVITED_BY)
    else:
        await expect(page.locator("#help-inviter")).to_be_hidden()


# Chromium logs the refused HTTP answer itself; the page handles it.
HTTP_ERROR_LOG = "Failed to load resource"


async def test_a_used_invite_says_so_and_opens_nothing(
    live_server: LiveServer, booking: Booking, chromium: Browser, tmp_path: Path
) -> None:
    # Someone (or another tab) already spent the link.
    first = booking.http.post("/api/v1/invites/redeem", json={"token": booking.invite_token})
    assert first.status_code == 200, first.text

    async with watched_page(chromium) as (page, watch):
        frames = Frames(page)
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="invite_used")
        await expect_heading(page, "This invite link has already been used")
        await expect(page.locator("#message-body")).to_have_text("Each invite link can only be used once.")
        hint = page.locator("#message-hint")
        await expect(hint).to_contain_text("ask the clinician to send you a new link")
        await expect(page.locator("#message-action")).to_be_hidden()
        await expect_help(page, inviter=True)
        assert page.url == f"{live_server.url}/join"
        assert frames.sockets == 0
        assert await page.evaluate("document.getElementById('self-video').srcObject") is None
        await page.screenshot(path=str(tmp_path / "invite-used.png"), full_page=True)
        watch.assert_clean(allow=(HTTP_ERROR_LOG,))


@pytest.mark.parametrize(
    "fragment",
    ["", "#", "#inv_not-a-real-invite-token", "#%E0%A4%A", "#" + "x" * 300],
    ids=["no-token", "empty", "unknown", "bad-encoding", "too-long"],
)
async def test_an_invalid_link_says_the_link_does_not_work(
    live_server: LiveServer, chromium: Browser, fragment: str
) -> None:
    async with watched_page(chromium) as (page, watch):
        frames = Frames(page)
        await page.goto(f"{live_server.url}/join{fragment}")
        await wait_for_screen(page, "message", message="invalid_link")
        await expect_heading(page, "This link does not work")
        await expect(page.locator("#message-hint")).to_contain_text("ask the clinician for a new link")
        # Nobody is known to have sent an unknown link: only the configured contact.
        await expect_help(page, inviter=False)
        assert page.url == f"{live_server.url}/join"
        assert frames.sockets == 0
        watch.assert_clean(allow=(HTTP_ERROR_LOG,))


async def test_an_expired_invite_says_it_has_expired(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    # As if the clock had moved past the invite's expiry.
    with session_scope(live_server.services.engine) as session:
        invite = session.exec(select(Invite).where(Invite.id == booking.invite_id)).one()
        invite.expires_at = utcnow() - timedelta(minutes=1)
        session.add(invite)

    async with watched_page(chromium) as (page, watch):
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="invite_expired")
        await expect_heading(page, "This invite link has expired")
        hint = page.locator("#message-hint")
        await expect(hint).to_have_text("Please ask the clinician to send you a new link.")
        await expect_help(page, inviter=True)
        watch.assert_clean(allow=(HTTP_ERROR_LOG,))


async def test_a_cancelled_consultation_says_it_is_not_taking_place(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    resp = booking.http.post(
        f"/api/v1/consultations/{booking.consultation_id}/cancel", json={"reason": "Patient transferred"}
    )
    assert resp.status_code == 200, resp.text

    async with watched_page(chromium) as (page, watch):
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="consultation_over")
        await expect_heading(page, "This consultation is not taking place")
        await expect_help(page, inviter=True)
        # The cancellation reason is the clinic's business, not the specialist's.
        assert "transferred" not in await page.locator("body").inner_text()
        watch.assert_clean(allow=(HTTP_ERROR_LOG,))


async def test_a_refused_camera_explains_how_to_allow_it(
    live_server: LiveServer, booking: Booking, tmp_path: Path
) -> None:
    async with launched_chromium(deny_media=True) as browser, watched_page(browser) as (page, watch):
        frames = Frames(page)
        await page.goto(booking.invite_link)
        await wait_for_screen(page, "message", message="camera_refused")
        await expect_heading(page, "Your camera and microphone are blocked")
        await expect(page.locator("#message-hint")).to_contain_text("choose Allow for camera and microphone")
        await expect_help(page, inviter=True)
        action = page.get_by_role("button", name="Try again")
        await expect(action).to_be_visible()
        assert frames.sockets == 0  # not put in the waiting room without camera and microphone
        await page.screenshot(path=str(tmp_path / "camera-refused.png"), full_page=True)

        # Still refused: the same advice again, not a dead end.
        await action.click()
        await wait_for_screen(page, "message", message="camera_refused")
        await expect(page.get_by_role("button", name="Try again")).to_be_visible()
        watch.assert_clean()


async def test_an_unreachable_server_says_so_and_try_again_recovers(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with hosting(live_server.ws_url, booking.host_join_token) as host:
        async with watched_page(chromium) as (page, watch):

            async def network_down(route: Route) -> None:
                await route.abort("connectionrefused")

            await page.route("**/api/v1/invites/check", network_down)
            await page.goto(booking.invite_link)
            await wait_for_screen(page, "message", message="unreachable")
            await expect_heading(page, "We cannot reach the consultation service")
            await expect(page.locator("#message-hint")).to_contain_text("connected to the internet")
            await expect_help(page, inviter=False)  # the server could not say who sent it

            # Reloading (what many people do first) keeps the unspent invite: still "cannot reach".
            await page.reload()
            await wait_for_screen(page, "message", message="unreachable")

            # The network comes back; the same invite still works.
            await page.unroute("**/api/v1/invites/check")
            await page.get_by_role("button", name="Try again").click()
            await wait_for_screen(page, "setup")

            # The network fails again just as they press Join: the invite is not spent, and
            # Try again brings them back to Join.
            await page.route("**/api/v1/invites/redeem", network_down)
            await page.get_by_role("button", name="Join the consultation").click()
            await wait_for_screen(page, "message", message="unreachable")
            await page.unroute("**/api/v1/invites/redeem")
            await page.get_by_role("button", name="Try again").click()
            await wait_for_screen(page, "setup")
            await page.get_by_role("button", name="Join the consultation").click()
            await wait_for_screen(page, "waiting")
            await host.sees(booking.specialist_id, lambda p: p.status == "waiting")
            watch.assert_clean(allow=("net::ERR_CONNECTION_REFUSED",))


async def test_reloading_the_page_keeps_the_place_without_the_spent_invite(
    live_server: LiveServer, booking: Booking, chromium: Browser
) -> None:
    async with hosting(live_server.ws_url, booking.host_join_token) as host:
        async with watched_page(chromium) as (page, watch):
            frames = Frames(page)
            await open_and_join(page, booking.invite_link)
            await wait_for_screen(page, "waiting")
            await host.sees(booking.specialist_id, lambda p: p.status == "waiting")

            await page.reload()
            await wait_for_screen(page, "waiting")
            first, again = frames.welcomes()
            assert again["resumed"] is True
            assert again["participant_id"] == first["participant_id"] == booking.specialist_id
            assert frames.hellos()[-1]["resume_token"] == first["resume_token"]
            await host.sees(booking.specialist_id, lambda p: p.status == "waiting" and p.connected)
            assert await screen(page) == "waiting"
            watch.assert_clean(allow=("WebSocket connection",))


async def test_an_early_specialist_is_told_when_and_the_link_is_not_spent(
    live_server: LiveServer, chromium: Browser, tmp_path: Path
) -> None:
    made = book(live_server, starts_in=timedelta(hours=2))
    try:
        async with watched_page(chromium) as (page, watch):
            frames = Frames(page)
            await page.goto(made.invite_link)
            await wait_for_screen(page, "early")
            await expect(page.locator("#prejoin-title")).to_contain_text("Your consultation is ")
            await expect(page.locator("#prejoin-lead")).to_contain_text("You can join from ")
            await expect(page.get_by_role("button", name="Join the consultation")).to_be_hidden()
            assert frames.sockets == 0
            await page.screenshot(path=str(tmp_path / "early.png"), full_page=True)
            watch.assert_clean()
        with session_scope(live_server.services.engine) as session:
            row = session.get(Invite, made.invite_id)
            assert row is not None and row.used_at is None
    finally:
        made.http.close()


async def test_the_waiting_room_fits_a_small_screen(
    live_server: LiveServer, booking: Booking, chromium: Browser, tmp_path: Path
) -> None:
    async with watched_page(chromium, viewport=(390, 844)) as (page, watch):
        await open_and_join(page, booking.invite_link)
        await wait_for_screen(page, "waiting")
        await expect(page.get_by_text("The clinician will let you in shortly.")).to_be_visible()
        # Nothing wider than the screen, and the buttons are large enough to tap.
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        for name in ("Mute microphone", "Turn camera off", "Camera and sound settings", "Leave consultation"):
            box = await page.get_by_role("button", name=name).bounding_box()
            assert box is not None and box["height"] >= 44 and box["width"] >= 44, (name, box)
        await page.screenshot(path=str(tmp_path / "waiting-room-phone.png"), full_page=True)
        watch.assert_clean()
