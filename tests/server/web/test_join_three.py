"""Three parties: the specialist's browser with the clinician (host) and the prison healthcare room."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from clinic_client.call import synthetic_media
from clinic_client.posture import PostureAgent
from clinic_client.session import ConsultationSession, room_join_token
from device_policy.facts import FactSet
from device_policy.policy import DeviceKind as PolicyDeviceKind
from device_policy.policy import Platform
from server.devices.models import DeviceKind
from tests.server.devices.helpers import collected_facts
from tests.server.web.conftest import HOST_NAME, LiveServer, book
from tests.server.web.host import hosting
from tests.server.web.pages import (
    QUALITY_TEXT,
    open_and_join,
    remote_video_playing,
    tile_selector,
    wait_for_screen,
)
from tests.support.browser import watched_page
from tests.support.loopback import eventually
from tests.support.signalling_scene import enrol_device

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOM_TAG = 2


class RecordedFacts:
    """Facts as the Linux collectors report them on a compliant room endpoint."""

    async def collect(self, *, device_id: str, device_kind: PolicyDeviceKind) -> tuple[Platform, FactSet]:
        return Platform.LINUX, collected_facts(device_id=device_id, kind=device_kind.value)


async def frames_from_browser(session: ConsultationSession, specialist: str) -> None:
    call = session.call
    assert call is not None
    await eventually(
        lambda: call.received_frames(specialist).video > 5,
        timeout=20,
        message=f"{session.client.participant_id} got no video from the browser",
    )


async def test_the_specialist_sees_and_is_seen_by_the_clinician_and_the_room(
    live_server: LiveServer, chromium: Browser, tmp_path: Path
) -> None:
    room = enrol_device(live_server.services, "room-web-01", DeviceKind.ROOM_ENDPOINT)
    booking = book(live_server, room_device_id=room.id)
    agent = PostureAgent(
        server_url=live_server.direct_url, device_id=room.id, private_key=room.key, source=RecordedFacts()
    )
    room_media = synthetic_media(source_tag=ROOM_TAG)
    try:
        async with hosting(live_server.ws_url, booking.host_join_token) as host:
            ticket = await room_join_token(live_server.direct_url, agent)
            room_session = await ConsultationSession.join(
                live_server.direct_url, ticket.token, media=room_media, posture=agent
            )
            async with room_session, watched_page(chromium) as (page, watch):
                room_id = room_session.client.participant_id
                specialist = booking.specialist_id
                await open_and_join(page, booking.invite_link)
                for pid in (room_id, specialist):
                    await host.sees(pid, lambda p: p.status == "waiting")
                    await host.session.admit(pid)

                # Two tiles, each named, each playing; the host and the room both offered.
                await wait_for_screen(page, "call")
                names = {host.participant_id: HOST_NAME, room_id: "room-web-01 display"}
                for pid, name in names.items():
                    await expect(page.locator(f"{tile_selector(pid)} .name")).to_have_text(name)
                    await remote_video_playing(page, pid)

                # Both aiortc parties receive the browser's camera.
                for session in (host.session, room_session):
                    await session.wait_until(lambda s: s.media_connected, timeout=20)
                    await frames_from_browser(session, specialist)
                for pid in names:
                    quality = page.locator(f"{tile_selector(pid)} .quality")
                    await expect(quality).to_have_text(QUALITY_TEXT, timeout=20_000)
                await page.screenshot(path=str(tmp_path / "three-way.png"), full_page=True)
                watch.assert_clean()
    finally:
        room_media.stop()
        await agent.aclose()
        booking.http.close()
