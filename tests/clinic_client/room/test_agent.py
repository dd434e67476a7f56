"""The room's agent against a real server: it finds the room's booking, joins, follows the
consultation and recovers by itself; the page is told one state at a time, relays only its own
media signalling, and never receives a token.

The host here is a raw protocol socket (tests/support/signalling_scene.py): the media itself
is the browser test's business (test_room_browser.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from server.consultations.models import Consultation
from server.db import session_scope
from tests.clinic_client.room.conftest import (
    TIMEOUT,
    Room,
    RoomAgentThread,
    Screen,
    assert_no_secrets,
    open_screen,
)
from tests.support.console_agent import ConsolePage
from tests.support.signalling_scene import Peer

pytestmark = pytest.mark.slow

OFFER = {"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "connection_id": "conn-0001"}


def scheduled_start(room: Room, consultation_id: str) -> datetime:
    with session_scope(room.scene.services.engine) as session:
        consultation = session.get(Consultation, consultation_id)
        assert consultation is not None
        return consultation.scheduled_start


async def host_sees(host: Peer, kind: str, participant_id: str) -> dict[str, object]:
    """The host is told ``kind`` (participant.joined, …) about the room."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = await host.recv()
            participant = message.get("participant")
            if (
                message["type"] == kind
                and isinstance(participant, dict)
                and participant["id"] == participant_id
            ):
                return message


async def in_call(room: Room, screen: Screen) -> tuple[str, Peer]:
    """Book, let the clinician in, admit the room: the page shows the call."""
    consultation_id = room.book()
    await screen.screen("booked")
    host = await room.scene.join_host(consultation_id)
    await screen.screen("waiting")
    assert (await host.request("admit", participant=room.participant_id))["type"] == "ack"
    await screen.screen("call")
    return consultation_id, host


async def test_idle_booked_waiting_call_ended_then_idle_with_nothing_pressed(
    room: Room, screen: Screen
) -> None:
    idle = await screen.got("room.state", screen="idle")
    assert idle["clinician"] is None and idle["call"] is None

    consultation_id = room.book()
    booked = await screen.screen("booked")
    assert booked["clinician"] == "Dr Host"
    assert datetime.fromisoformat(booked["starts_at"]) == scheduled_start(room, consultation_id).replace(
        tzinfo=datetime.fromisoformat(booked["starts_at"]).tzinfo
    )

    host = await room.scene.join_host(consultation_id)
    waiting = await screen.screen("waiting")
    assert waiting["call"] is None
    # Nobody is let in by themselves: the host sees the room waiting.
    assert any(
        p["id"] == room.participant_id and p["status"] == "waiting" for p in host.welcome["participants"]
    )

    assert (await host.request("admit", participant=room.participant_id))["type"] == "ack"
    call = (await screen.screen("call"))["call"]
    assert call["me"] == room.participant_id
    assert [o["id"] for o in call["others"]] == [host.id]
    assert call["others"][0]["role"] == "host"
    assert call["ice_policy"] in ("all", "relay") and isinstance(call["ice_servers"], list)

    # The host's media signalling reaches the page, marked with who sent it…
    await host.send(type="offer", to=room.participant_id, **OFFER)
    offer = await screen.expect("offer")
    assert offer["from"] == host.id and offer["sdp"] == OFFER["sdp"]
    # …and the page's reaches the host.
    await screen.send(type="answer", to=host.id, sdp="v=0\r\n", connection_id="conn-0001")
    answer = await host.expect("answer")
    assert answer["from"] == room.participant_id
    await screen.send(type="ice", id="c1", to=host.id, candidate="", connection_id="conn-0001")
    await host.expect("ice", candidate="")

    # The page can operate nothing: host commands, hello, leave are refused by the agent.
    for kind in ("admit", "end", "leave", "hello", "posture", "start"):
        await screen.send(type=kind, id=f"x-{kind}", participant=room.participant_id)
        refused = await screen.expect("error", ref=f"x-{kind}")
        assert refused["code"] == "unknown_type"
    await screen.send(type="ping", id="p1")
    assert (await screen.expect("pong"))["ref"] == "p1"
    await screen.send_raw("not json")
    assert (await screen.expect("error"))["code"] == "bad_json"

    assert (await host.request("end", reason="done"))["type"] == "ack"
    ended = await screen.screen("ended")
    assert ended["call"] is None
    # After a while the screen goes back to "no appointment" (the consultation is over).
    await screen.screen("idle")
    assert screen.screens() == ["starting", "idle", "booked", "waiting", "call", "ended", "idle"]
    assert_no_secrets(room)


async def test_a_dropped_link_says_reconnecting_and_the_call_goes_on(
    room: Room, agent: RoomAgentThread, screen: Screen
) -> None:
    _, host = await in_call(room, screen)

    async def drop() -> None:
        client = agent.agent.client
        assert client is not None
        client.drop_socket()  # as a network failure would

    await agent.run(drop())
    lost = await screen.screen("reconnecting")
    assert lost["reason"] == "server"
    assert lost["call"] is not None  # the page keeps the pictures while the agent resumes
    back = await screen.screen("call")
    assert [o["id"] for o in back["call"]["others"]] == [host.id]  # still admitted: resumed in time
    await host_sees(host, "participant.resumed", room.participant_id)
    assert_no_secrets(room)


async def test_a_restarted_server_is_joined_again_and_the_clinician_lets_the_room_in_again(
    room: Room, screen: Screen
) -> None:
    consultation_id, host = await in_call(room, screen)

    await asyncio.to_thread(room.restart_server)
    await screen.screen("reconnecting", timeout=60)
    # The new server knows nothing of the old sockets: the room joins afresh and waits
    # (the consultation is open: its clinician has been).
    await screen.screen("waiting", timeout=60)
    host = await room.scene.join_host(consultation_id)
    assert (await host.request("admit", participant=room.participant_id))["type"] == "ack"
    await screen.screen("call")


async def test_a_reloaded_page_is_back_in_the_call_and_the_room_kept_its_place(
    room: Room, page: ConsolePage, screen: Screen
) -> None:
    _, host = await in_call(room, screen)
    await screen.close()

    again = await open_screen(page, room)
    first = await again.recv()
    assert first["type"] == "room.state" and first["screen"] == "call"
    assert [o["id"] for o in first["call"]["others"]] == [host.id]
    # The host never saw the room leave.
    seen = await host.sync()
    assert not [m for m in seen if m["type"] == "participant.left"]


async def test_no_screen_no_join_and_a_screen_gone_for_good_leaves(room: Room) -> None:
    with room.agent(page_grace_s=1.0) as running:
        consultation_id = room.book()
        host = await room.scene.join_host(consultation_id)
        await asyncio.sleep(1.5)
        # No page has opened: the room is not in the waiting room (nobody would see the call).
        seen = await host.sync()
        assert not [m for m in seen if m["type"] == "participant.joined"]

        async with ConsolePage(running) as page:
            screen = await open_screen(page, room)
            await screen.screen("waiting")
            await host_sees(host, "participant.joined", room.participant_id)
            await screen.close()
            left = await host_sees(host, "participant.left", room.participant_id)
            assert left["reason"] == "left"


async def test_a_second_page_replaces_the_first(room: Room, page: ConsolePage, screen: Screen) -> None:
    first = screen
    second = await open_screen(page, room)
    assert (await second.recv())["screen"] == "idle"
    await first.expect("agent.replaced")
    assert await first.closed() == 4409


async def test_a_room_turned_away_is_told_the_appointment_ended_and_does_not_come_back(
    room: Room, screen: Screen
) -> None:
    consultation_id = room.book()
    host = await room.scene.join_host(consultation_id)
    await screen.screen("waiting")
    assert (await host.request("deny", participant=room.participant_id, reason="wrong room"))["type"] == "ack"
    await screen.screen("ended")
    await screen.screen("idle")  # the consultation is still open, but not for this room
    await asyncio.sleep(1.0)
    seen = await host.sync()
    assert not [m for m in seen if m["type"] == "participant.joined"]
    assert screen.screens()[-1] == "idle"


async def test_a_room_that_fails_its_device_check_is_not_ready(room: Room) -> None:
    with room.agent(profile="firewall-off") as running:
        async with ConsolePage(running) as page:
            screen = await open_screen(page, room)
            state = await screen.screen("unavailable")
            assert state["reason"] == "device_check"


async def test_stopping_the_agent_leaves_the_consultation_at_once(room: Room) -> None:
    running = room.agent().start()
    try:
        async with ConsolePage(running) as page:
            screen = await open_screen(page, room)
            consultation_id = room.book()
            host = await room.scene.join_host(consultation_id)
            await screen.screen("waiting")
            await asyncio.to_thread(running.stop)
            left = await host_sees(host, "participant.left", room.participant_id)
            assert left["reason"] == "left"  # not "timeout": the room said goodbye
    finally:
        await asyncio.to_thread(running.stop)
