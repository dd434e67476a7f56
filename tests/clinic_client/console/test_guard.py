"""The guard, in front of every route: Host, Origin, the one-time launch code and the cookie.

These run the agent's app in process (httpx's ASGI transport): the guard decides before any
route runs, so no telemed server is needed; the server URL points nowhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from clinic_client.console import ConsoleAgent, Gate, create_console_app
from clinic_client.console.guard import CSP
from clinic_client.posture import SimulatedSource
from device_policy.keys import generate_device_key

PORT = 48123
ORIGIN = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def gate() -> Gate:
    return Gate(PORT)


@pytest.fixture
async def http(gate: Gate, static_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app, with a browser-like client at the agent's own address (no cookie yet)."""
    agent = ConsoleAgent(
        server_url="http://127.0.0.1:9",  # discard port: nothing answers
        device_id="laptop-01",
        private_key=generate_device_key(),
        source=SimulatedSource("compliant"),
    )
    app = create_console_app(agent, gate, static_dir=static_dir)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield client
    await agent.aclose()


async def launch(http: httpx.AsyncClient, gate: Gate) -> httpx.Response:
    return await http.get(gate.launch_url.removeprefix(ORIGIN))


async def test_the_launch_code_gives_an_httponly_strict_cookie_once(
    http: httpx.AsyncClient, gate: Gate
) -> None:
    first = await launch(http, gate)
    assert first.status_code == 303
    assert first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("telemed_console=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert (await http.get("/")).status_code == 200

    again = await launch(http, gate)
    assert again.status_code == 403
    assert "used already" in again.text
    assert again.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in again.headers


async def test_a_wrong_launch_code_is_refused_and_gives_no_cookie(
    http: httpx.AsyncClient, gate: Gate
) -> None:
    wrong = await http.get("/launch/" + "A" * 43)
    assert wrong.status_code == 403
    assert "not valid" in wrong.text
    assert "set-cookie" not in wrong.headers
    # …and the right code still works afterwards.
    assert (await launch(http, gate)).status_code == 303


async def test_the_launch_code_is_256_random_bits(gate: Gate) -> None:
    code = gate.launch_url.rsplit("/", 1)[1]
    assert len(code) == 43  # base64url of 32 bytes, unpadded
    assert Gate(PORT).launch_url != gate.launch_url


async def test_without_the_cookie_pages_say_where_to_start_and_the_api_answers_401(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/")
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert "Telemed shortcut" in page.text
    api = await http.get("/api/state")
    assert api.status_code == 401
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["code"] == "no_session"
    forged = await http.get("/api/state", headers={"Cookie": "telemed_console=guessed"})
    assert forged.json()["code"] == "no_session"


async def test_a_foreign_host_is_refused_with_421_even_with_the_cookie(
    http: httpx.AsyncClient, gate: Gate
) -> None:
    await launch(http, gate)
    for host in ("evil.example:48123", "localhost:48123", "127.0.0.1:1", "127.0.0.1"):
        response = await http.get("/api/state", headers={"Host": host})
        assert response.status_code == 421, host
        assert response.json()["code"] == "wrong_host"


async def test_a_foreign_origin_is_refused_and_unsafe_requests_must_name_ours(
    http: httpx.AsyncClient, gate: Gate
) -> None:
    await launch(http, gate)
    for origin in ("http://evil.example", "http://localhost:48123", "null", "https://127.0.0.1:48123"):
        response = await http.get("/api/state", headers={"Origin": origin})
        assert response.status_code == 403, origin
        assert response.json()["code"] == "wrong_origin"
    # A POST with no Origin at all (a form from a page that hides it) is refused too.
    bare = await http.post("/api/sign-out")
    assert bare.status_code == 403 and bare.json()["code"] == "wrong_origin"
    ours = await http.get("/api/state", headers={"Origin": ORIGIN})
    assert ours.status_code == 200
    assert ours.json()["signed_in"] is False


async def test_every_response_carries_the_security_headers_and_html_the_csp(
    http: httpx.AsyncClient, gate: Gate
) -> None:
    refused = await http.get("/api/state")
    redirect = await launch(http, gate)
    page = await http.get("/")
    api = await http.get("/api/state")
    missing = await http.get("/assets/nothing.js")
    for response in (refused, redirect, page, api, missing):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    assert page.headers["content-security-policy"] == CSP
    assert "frame-ancestors 'none'" in CSP and "script-src 'self';" in CSP
    assert "content-security-policy" not in api.headers


async def test_static_files_are_served_with_their_types_and_nothing_outside(
    http: httpx.AsyncClient, gate: Gate, static_dir: Path
) -> None:
    await launch(http, gate)
    page = await http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "Telemed console" in page.text
    module = await http.get("/assets/js/console.mjs")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    css = await http.get("/assets/console.css")
    assert css.headers["content-type"].startswith("text/css")
    (static_dir.parent / "secret.txt").write_text("not for the page")
    for path in ("/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/assets/nothing.js", "/nowhere"):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert "not for the page" not in response.text


async def test_a_validation_error_does_not_echo_the_password(http: httpx.AsyncClient, gate: Gate) -> None:
    await launch(http, gate)
    response = await http.post(
        "/api/sign-in", json={"username": "", "password": "hunter2-secret"}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "hunter2-secret" not in response.text


async def test_an_unreachable_server_is_a_503_server_unreachable(http: httpx.AsyncClient, gate: Gate) -> None:
    await launch(http, gate)
    sign_in = await http.post(
        "/api/sign-in", json={"username": "doctor", "password": "x"}, headers={"Origin": ORIGIN}
    )
    assert sign_in.status_code == 503
    assert sign_in.json()["code"] == "server_unreachable"
    check = await http.post("/api/device-check", headers={"Origin": ORIGIN})
    assert check.status_code == 503
    assert check.json()["code"] == "server_unreachable"
    # Before signing in, the other routes say so rather than calling the server.
    rooms = await http.get("/api/rooms")
    assert rooms.status_code == 401 and rooms.json()["code"] == "not_signed_in"
