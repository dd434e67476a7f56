"""The room agent's app: the console's guard with the room's cookie and words, the security
headers, the page's files (and the one console module it shares), ``GET /api/state``.

These run the app in process (httpx's ASGI transport: no lifespan, so the agent never starts
and its state is "starting"); the server URL points nowhere. The WebSocket checks need a real
uvicorn (:class:`RoomAgentThread`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from clinic_client.console.guard import CSP, Gate
from clinic_client.posture import PostureAgent, SimulatedSource
from clinic_client.room import RoomAgent, create_room_app, room_gate
from clinic_client.room.app import NOT_CONNECTED_WORDS
from device_policy.keys import generate_device_key
from tests.clinic_client.room.conftest import RoomAgentThread
from tests.support.console_agent import ConsolePage

PORT = 48124
ORIGIN = f"http://127.0.0.1:{PORT}"
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers


@pytest.fixture
def gate() -> Gate:
    return room_gate(PORT)


@pytest.fixture
async def http(gate: Gate) -> AsyncIterator[httpx.AsyncClient]:
    """The app, with a browser-like client at the agent's own address (no cookie yet)."""
    posture = PostureAgent(
        server_url=NOWHERE, device_id="room-01", private_key=generate_device_key(), source=SimulatedSource()
    )
    agent = RoomAgent(server_url=NOWHERE, posture=posture)
    app = create_room_app(agent, gate)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield client
    await agent.aclose()


async def launched(http: httpx.AsyncClient, gate: Gate) -> httpx.Response:
    return await http.get(gate.launch_url.removeprefix(ORIGIN))


async def test_the_launch_code_gives_the_room_cookie_once(http: httpx.AsyncClient, gate: Gate) -> None:
    first = await launched(http, gate)
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("telemed_room=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    page = await http.get("/")
    assert page.status_code == 200
    assert '<script type="module" src="/assets/js/main.js">' in page.text

    again = await launched(http, gate)
    assert again.status_code == 403
    assert "set-cookie" not in again.headers
    assert "This link has been used already." in again.text and NOT_CONNECTED_WORDS in again.text
    wrong = await http.get("/launch/" + "A" * 43)
    assert wrong.status_code == 403 and "This link is not valid." in wrong.text


async def test_without_the_cookie_the_patient_is_told_to_ask_staff(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert NOT_CONNECTED_WORDS in page.text
    api = await http.get("/api/state")
    assert api.status_code == 401
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["code"] == "no_session"


async def test_host_and_origin_are_checked(http: httpx.AsyncClient, gate: Gate) -> None:
    await launched(http, gate)
    other_host = await http.get("/api/state", headers={"Host": f"rebind.example:{PORT}"})
    assert other_host.status_code == 421 and other_host.json()["code"] == "wrong_host"
    other_page = await http.get("/api/state", headers={"Origin": "http://127.0.0.1:9999"})
    assert other_page.status_code == 403 and other_page.json()["code"] == "wrong_origin"
    ok = await http.get("/api/state")
    assert ok.status_code == 200


async def test_every_answer_is_no_store_and_the_page_has_the_strict_csp(
    http: httpx.AsyncClient, gate: Gate
) -> None:
    await launched(http, gate)
    for path in ("/", "/assets/room.css", "/assets/js/main.js", "/shared/js/peer.js", "/api/state", "/nope"):
        response = await http.get(path)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        assert response.headers["x-frame-options"] == "DENY", path
    assert (await http.get("/")).headers["content-security-policy"] == CSP


async def test_the_page_its_files_and_only_the_console_modules_it_imports(
    http: httpx.AsyncClient, gate: Gate
) -> None:
    await launched(http, gate)
    for path in ("/assets/js/main.js", "/assets/js/call.js", "/shared/js/peer.js", "/shared/js/format.js"):
        response = await http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", path
    assert (await http.get("/assets/room.css")).headers["content-type"] == "text/css; charset=utf-8"
    # The room page imports the console's WebRTC module; it is served, nothing else of the console.
    assert "export class Peer" in (await http.get("/shared/js/peer.js")).text
    for path in (
        "/shared/js/call.js",
        "/shared/js/records.js",
        "/shared/console.html",
        "/shared/js/../console.html",
        "/assets/../agent.py",
        "/assets/%2e%2e/agent.py",
    ):
        response = await http.get(path)
        assert response.status_code == 404, path


async def test_the_state_before_the_agent_has_asked_the_server(http: httpx.AsyncClient, gate: Gate) -> None:
    await launched(http, gate)
    state = (await http.get("/api/state")).json()
    assert state == {
        "type": "room.state",
        "screen": "starting",
        "reason": None,
        "clinician": None,
        "starts_at": None,
        "call": None,
    }


async def test_an_unreachable_server_is_reconnecting_on_the_page() -> None:
    with RoomAgentThread(NOWHERE, "room-01", generate_device_key()) as running:
        async with ConsolePage(running) as page:
            cookie = {"Cookie": f"telemed_room={page.cookies.get('telemed_room')}"}
            # The upgrade is refused without the cookie, and from another origin.
            for origin, headers in ((running.base_url, {}), ("http://127.0.0.1:9999", cookie)):
                with pytest.raises(InvalidStatus) as refused:
                    await connect(running.ws_url, origin=origin, additional_headers=headers)  # type: ignore[arg-type]
                assert refused.value.response.status_code == 403
            async with connect(running.ws_url, origin=running.base_url, additional_headers=cookie) as ws:  # type: ignore[arg-type]
                while True:
                    message = json.loads(await ws.recv())
                    if message["screen"] != "starting":
                        break
                assert message["type"] == "room.state"
                assert message["screen"] == "reconnecting" and message["reason"] == "server"
