"""The signalling bridge: the page's socket to the agent, the agent's to the server."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.clinic_client.console.conftest import Clinic, Page, Socket, assert_no_secrets, open_bridge
from tests.support.console_agent import AgentThread


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:{port}", None])
async def test_an_upgrade_from_another_origin_or_without_one_is_refused(
    page: Page, agent: AgentThread, origin: str | None
) -> None:
    cookie = f"telemed_console={page.cookies.get('telemed_console')}"
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            agent.ws_url,
            origin=origin.format(port=agent.port) if origin else None,  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
        )
    assert refused.value.response.status_code == 403


async def test_an_upgrade_without_the_cookie_is_refused(agent: AgentThread) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(agent.ws_url, origin=agent.base_url)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_joining_before_signing_in_is_refused_with_4401(page: Page) -> None:
    socket = await open_bridge(page)
    await socket.send(type="join", consultation_id=page.clinic.scene.consultation_id)
    error = await socket.expect("error")
    assert error["code"] == "not_signed_in"
    await socket.ws.wait_closed()
    assert socket.ws.close_code == 4401


async def test_the_first_message_must_be_a_join(page: Page) -> None:
    await page.ready()
    socket = await open_bridge(page)
    await socket.send(type="admit", participant="room:room-01")
    assert (await socket.expect("error"))["code"] == "join_required"
    await socket.ws.wait_closed()
    assert socket.ws.close_code == 4400


async def test_a_consultation_that_does_not_exist_is_refused(page: Page) -> None:
    await page.ready()
    socket = await open_bridge(page)
    await socket.send(type="join", consultation_id="0" * 32)
    assert (await socket.expect("error"))["code"] == "not_found"
    await socket.ws.wait_closed()
    assert socket.ws.close_code == 4403


async def joined(page: Page) -> tuple[Socket, dict[str, object]]:
    await page.ready()
    socket = await open_bridge(page)
    await socket.send(type="join", consultation_id=page.clinic.scene.consultation_id)
    welcome = await socket.expect("welcome")
    return socket, welcome


async def test_the_host_joins_admits_the_waiting_room_and_leaves_when_the_page_closes(
    page: Page, clinic: Clinic
) -> None:
    socket, welcome = await joined(page)
    assert welcome["role"] == "host"
    assert welcome["status"] == "admitted"
    assert welcome["consultation_id"] == clinic.scene.consultation_id
    assert str(welcome["participant_id"]).startswith("host:")
    assert "resume_token" not in welcome
    assert "ice_servers" in welcome and "ice_policy" in welcome

    room = await clinic.scene.join_room()
    assert room.welcome["status"] == "waiting"
    joined_event = await socket.expect("participant.joined")
    assert joined_event["participant"]["id"] == room.id
    assert joined_event["participant"]["status"] == "waiting"

    await socket.send(type="admit", id="page-1", participant=room.id)
    ack = await socket.expect("ack")
    assert ack["ref"] == "page-1"
    await room.expect("admitted")
    admitted = await socket.got("participant.admitted")
    assert admitted["participant"]["id"] == room.id

    await socket.send(type="hello", join_token="x")
    assert (await socket.expect("error"))["code"] == "unknown_type"
    await socket.send(type="posture", posture_token="x", posture_proof="y")
    assert (await socket.expect("error"))["code"] == "unknown_type"
    await socket.send(v=1, type="ping", id="p9")
    assert (await socket.expect("pong"))["ref"] == "p9"
    await socket.send(type="admit", id="page-2", participant="room:nobody")
    refused = await socket.expect("error")
    assert refused["ref"] == "page-2" and refused["code"] == "unknown_participant"

    # The host relays an offer: the room receives it from the host, with the page's fields.
    await socket.send(type="offer", to=room.id, sdp="v=0\r\n", connection_id="conn-00001")
    offer = await room.expect("offer")
    assert offer["from"] == welcome["participant_id"] and offer["connection_id"] == "conn-00001"

    await socket.ws.close()
    returned = await room.expect("returned")
    assert returned["reason"] == "host_left"
    assert_no_secrets(clinic)


async def test_a_room_offer_reaches_the_page_and_end_closes_everything(page: Page, clinic: Clinic) -> None:
    socket, welcome = await joined(page)
    room = await clinic.scene.join_room()
    await socket.expect("participant.joined")
    await socket.send(type="admit", id="a", participant=room.id)
    await room.expect("admitted")
    await room.send(type="offer", to=welcome["participant_id"], sdp="v=0\r\n", connection_id="room-conn-1")
    offer = await socket.expect("offer")
    assert offer["from"] == room.id and offer["sdp"] == "v=0\r\n"

    await socket.send(type="end", id="e", reason="done")
    ended = await socket.expect("consultation.ended")
    assert ended["reason"] == "done"
    closed = await socket.expect("agent.closed")
    assert closed["close_code"] == 4410
    await socket.ws.wait_closed()
    assert clinic.scene.state() == "ended"
    assert_no_secrets(clinic)
