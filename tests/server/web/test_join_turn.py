"""The page uses the TURN credentials and ICE policy from the welcome (then each renewal), through coturn.

The server mints coturn ``use-auth-secret`` credentials per participant. The host is a
prison laptop (relay only), so every packet of the call passes through coturn; the
specialist's browser may use any path (``all``) but can only reach the host's relay.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.server.web.conftest import Booking, LiveServer, book, running_server
from tests.server.web.host import hosting
from tests.server.web.pages import (
    RTC_PROBE,
    Frames,
    open_and_join,
    remote_video_playing,
    rtc_configurations,
    selected_pair,
    wait_for_screen,
)
from tests.support.browser import require_chromium, watched_page
from tests.support.coturn import CoturnServer, running_coturn
from tests.support.loopback import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.coturn]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    with running_coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, coturn: CoturnServer) -> Iterator[LiveServer]:
    """The live server, handing out credentials for the real coturn."""
    require_chromium()
    env = {"TELEMED_TURN_URLS": json.dumps([coturn.url]), "TELEMED_TURN_SECRET": coturn.secret.decode()}
    with running_server(tmp_path_factory.mktemp("live-turn"), env) as live:
        yield live


async def test_media_flows_through_turn_with_the_credentials_from_the_welcome(
    live_server: LiveServer, booking: Booking, chromium: Browser, coturn: CoturnServer, tmp_path: Path
) -> None:
    specialist = booking.specialist_id
    async with hosting(live_server.ws_url, booking.host_join_token) as host:
        async with watched_page(chromium) as (page, watch):
            await page.add_init_script(RTC_PROBE)
            await open_and_join(page, booking.invite_link)
            await host.sees(specialist, lambda p: p.status == "waiting")
            await host.session.admit(specialist)
            await wait_for_screen(page, "call")
            await remote_video_playing(page, host.participant_id)
            await host.session.wait_until(lambda s: s.media_connected, timeout=20)

            # The page configured WebRTC exactly as the welcome said.
            (configuration,) = await rtc_configurations(page)
            assert configuration["iceTransportPolicy"] == "all"
            (server,) = configuration["iceServers"]
            assert server["urls"] == [coturn.url]
            assert server["username"].endswith(":specialist." + booking.invite_id)
            assert server["credential"]

            # The media path: the browser talks to the host's relay on coturn.
            pair = await selected_pair(page)
            assert pair is not None and pair["remote"] == "relay", pair
            host_pair = host.call.peer(specialist)
            assert host_pair is not None
            chosen = host_pair.selected_pair()
            assert chosen is not None and chosen.local_type == "relay"
            await eventually(
                lambda: host.call.received_frames(specialist).video > 5,
                timeout=20,
                message="no video from the browser through coturn",
            )
            # coturn accepted both sides' minted credentials (the browser's too).
            logs = coturn.logs()
            for user in (host.participant_id, specialist):
                turn_user = re.escape(user.replace(":", "."))
                allocated = rf"user <\d+:{turn_user}>: incoming packet ALLOCATE processed, success"
                assert re.search(allocated, logs), user
            watch.assert_clean()


@pytest.fixture(scope="module")
def short_ttl_server(tmp_path_factory: pytest.TempPathFactory, coturn: CoturnServer) -> Iterator[LiveServer]:
    """A live server whose TURN credentials live 6 s (renewed 2 s before they expire)."""
    require_chromium()
    env = {
        "TELEMED_TURN_URLS": json.dumps([coturn.url]),
        "TELEMED_TURN_SECRET": coturn.secret.decode(),
        "TELEMED_TURN_TTL": "PT6S",
    }
    with running_server(tmp_path_factory.mktemp("live-short-ttl"), env) as live:
        yield live


def _expiry(username: str) -> int:
    return int(username.split(":", 1)[0])


async def test_a_new_peer_connection_after_expiry_uses_the_renewed_credentials(
    short_ttl_server: LiveServer, chromium: Browser, coturn: CoturnServer
) -> None:
    booking = book(short_ttl_server)
    specialist = booking.specialist_id
    try:
        async with hosting(short_ttl_server.ws_url, booking.host_join_token) as host:
            async with watched_page(chromium) as (page, watch):
                await page.add_init_script(RTC_PROBE)
                frames = Frames(page)
                await open_and_join(page, booking.invite_link)
                await host.sees(specialist, lambda p: p.status == "waiting")
                await host.session.admit(specialist)
                await wait_for_screen(page, "call")
                await remote_video_playing(page, host.participant_id)
                await host.session.wait_until(lambda s: s.media_connected, timeout=20)
                (first,) = await rtc_configurations(page)
                first_expiry = _expiry(first["iceServers"][0]["username"])

                # Past the first credentials' expiry, with renewals received all along.
                await eventually(
                    lambda: (
                        time.time() > first_expiry + 1
                        and any(
                            m["expires_at"] > first_expiry
                            for m in frames.received
                            if m["type"] == "ice_servers"
                        )
                    ),
                    timeout=20,
                    message="the page got no renewed credentials",
                )
                # A recovery: the host negotiates a fresh peer connection; the page builds a new
                # RTCPeerConnection for it, with the latest credentials, and media flows again.
                await host.call.restart_peer(specialist)
                await page.wait_for_function("() => window.__rtcConfigurations.length === 2", timeout=20_000)
                await host.session.wait_until(lambda s: s.media_connected, timeout=20)
                await remote_video_playing(page, host.participant_id)
                second = (await rtc_configurations(page))[1]["iceServers"][0]
                renewals = {
                    m["ice_servers"][0]["username"] for m in frames.received if m["type"] == "ice_servers"
                }
                assert second["username"] in renewals
                assert _expiry(second["username"]) > first_expiry
                # The browser allocated a relay with them (gathering under "all" includes TURN).
                allocated = (
                    rf"user <{re.escape(second['username'])}>: incoming packet ALLOCATE processed, success"
                )
                await eventually(
                    lambda: re.search(allocated, coturn.logs()) is not None,
                    timeout=10,
                    message="coturn never allocated with the renewed credentials",
                )
                watch.assert_clean()
    finally:
        booking.http.close()
