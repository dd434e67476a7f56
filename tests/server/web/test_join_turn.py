"""The page uses the TURN credentials and ICE policy from the welcome, through a real coturn.

The server mints coturn ``use-auth-secret`` credentials per participant. The host is a
prison laptop (relay only), so every packet of the call passes through coturn; the
specialist's browser may use any path (``all``) but can only reach the host's relay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.server.web.conftest import Booking, LiveServer, running_server
from tests.server.web.host import hosting
from tests.server.web.pages import (
    RTC_PROBE,
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
            await page.goto(booking.invite_link)
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
