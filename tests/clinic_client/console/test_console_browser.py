"""The clinician's console in real Chromium (fake camera and microphone), against a real server.

A clinician's whole consultation with the keyboard where a person would use it: open the
launch link, sign in, pass the laptop check, book the patient into a room (found by prison
number), confirm identity and consent, let the room in from the waiting room, start, see and
hear the room (the room endpoint is the SDK with aiortc and synthetic media, and decodes the
console's camera), read the patient's PDF drawn in the page, write the note twice (two
versions), and end — after which the records are gone from the page and the agent refuses
the document. A second test shows a laptop that fails its check: the failing rule with its fix,
and nothing else reachable. Every screen passes axe-core and is photographed to
test-artifacts/console/; no token, proof or key ever reaches the page.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Error, Page, Response, WebSocket, expect

from clinic_client.console.app import STATIC_DIR
from server.devices.models import DeviceKind
from tests.clinic_client.console.conftest import Clinic
from tests.server.factories import PASSWORD
from tests.server.web.pages import video_playing
from tests.support.axe import check_accessibility, screenshot
from tests.support.browser import launched_chromium, watched_page
from tests.support.console_agent import AgentThread
from tests.support.documents import pdf_with_text
from tests.support.room_endpoint import running_room
from tests.support.signalling_scene import enrol_device

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 20_000
PRISON_NUMBER = "A1234BC"
PATIENT = "Ada Quillfeather"
ROOM_ID = "room-02"
# A failed sub-resource (the document refused after the end) is logged by Chromium itself.
EXPECTED_ERRORS = ("Failed to load resource",)


@pytest.fixture
def static_dir() -> Path:
    """The real page, not the stand-in the API tests use."""
    return STATIC_DIR


@pytest.fixture
def running(clinic: Clinic) -> Iterator[AgentThread]:
    with clinic.agent() as agent:
        yield agent


class Wire:
    """Everything the page received from its agent: JSON bodies and bridge frames."""

    def __init__(self, page: Page) -> None:
        self.texts: list[str] = []
        self.bridge_types: set[str] = set()
        page.on("websocket", self._on_socket)
        page.on("response", self._on_response)

    def _on_socket(self, ws: WebSocket) -> None:
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        text = payload if isinstance(payload, str) else payload.decode("latin-1")
        self.texts.append(text)
        try:
            kind = json.loads(text).get("type")
        except (ValueError, AttributeError):
            kind = None
        if isinstance(kind, str):
            self.bridge_types.add(kind)

    async def _on_response(self, response: Response) -> None:
        self.texts.append(json.dumps(await response.all_headers()))
        if "json" in (response.headers.get("content-type") or ""):
            with contextlib.suppress(Error):  # a response the page navigated away from
                self.texts.append(await response.text())


async def on_screen(page: Page, name: str, timeout: float = WAIT_MS) -> None:
    await page.wait_for_function("n => document.body.dataset.screen === n", arg=name, timeout=timeout)


async def look(page: Page, name: str) -> None:
    """axe-core finds nothing serious, and the screen is photographed."""
    await check_accessibility(page, name=f"console/{name}")
    await screenshot(page, "console", name)


async def tab_to(page: Page, selector: str, *, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the keyboard focus."""
    for _ in range(limit):
        if await page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
        await page.keyboard.press("Tab")
    focused = await page.evaluate("() => document.activeElement?.outerHTML.slice(0, 120)")
    raise AssertionError(f"{selector} was not reached with Tab (focus stayed on {focused})")


async def press(page: Page, selector: str, key: str = "Enter") -> None:
    """Reach ``selector`` with the keyboard and press ``key`` on it."""
    await tab_to(page, selector)
    await page.keyboard.press(key)


async def assert_page_holds_no_secret(page: Page, secrets: set[str]) -> None:
    """Nothing the page's JavaScript can read holds a token: no cookie, no storage, no markup."""
    assert await page.evaluate("() => document.cookie") == ""
    readable = await page.evaluate(
        """() => JSON.stringify({
            local: Object.entries(localStorage), session: Object.entries(sessionStorage),
            html: document.documentElement.outerHTML })"""
    )
    leaked = [s[:10] for s in secrets if s and s in readable]
    assert not leaked, f"the page can read tokens: {leaked}"


async def book_for_room(page: Page) -> None:
    """The booking form, by keyboard: prison number, check the details, room, the default start."""
    await press(page, "#schedule-book")
    await on_screen(page, "book")
    await look(page, "book")
    await tab_to(page, "#book-prison-number")
    await page.keyboard.type(PRISON_NUMBER.lower())  # typed as it comes; the page upper-cases it
    await page.keyboard.press("Enter")
    await expect(page.locator("#book-patient-name")).to_have_text(PATIENT)
    await expect(page.locator("#book-confirm")).to_be_focused()
    await page.keyboard.press("Space")
    await expect(page.locator("#book-submit")).to_be_enabled()
    await page.select_option("#book-room", ROOM_ID)
    # The next quarter hour is today except just before midnight: then book the current minute.
    today = await page.evaluate("() => new Date().toLocaleDateString('sv')")
    if await page.input_value("#book-date") != today:
        now = await page.evaluate(
            "() => { const d = new Date(); return [d.toLocaleDateString('sv'),"
            " d.toTimeString().slice(0, 5)] }"
        )
        await page.fill("#book-date", now[0])
        await page.fill("#book-time", now[1])
    await look(page, "book-filled")
    await press(page, "#book-submit")
    await on_screen(page, "schedule")


async def test_a_clinician_runs_a_consultation_from_the_console(clinic: Clinic, running: AgentThread) -> None:
    document_id = clinic.import_document(pdf_with_text())
    room_device = enrol_device(clinic.scene.services, ROOM_ID, DeviceKind.ROOM_ENDPOINT)

    async with (
        running_room(clinic.server_url, room_device.id, room_device.key) as room,
        launched_chromium() as browser,
        watched_page(browser) as (page, watch),
    ):
        room.join_in_background(timeout=300)  # it asks until the clinician has booked it
        wire = Wire(page)
        await page.goto(running.launch_url)
        assert page.url == f"{running.base_url}/"  # the one-time code left the address bar
        await on_screen(page, "signin")
        await look(page, "signin")

        # A wrong password is said in plain words, and the password field gets the focus back.
        await tab_to(page, "#signin-username")
        await page.keyboard.type("doctor")
        await page.keyboard.press("Tab")
        await page.keyboard.type("not the password")
        await page.keyboard.press("Enter")
        error = page.locator("#signin-error")
        await expect(error).to_have_text("The username or password is not right. Check them and try again.")
        await expect(page.locator("#signin-password")).to_be_focused()
        await look(page, "signin-wrong-password")
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")

        # The laptop check: every rule passed; one button onwards.
        await on_screen(page, "device-check")
        await page.wait_for_function(
            "() => document.querySelector('section[data-screen=device-check]').dataset.result === 'pass'",
            timeout=WAIT_MS,
        )
        outcomes = await page.locator("#check-rules li[data-rule-id]").evaluate_all(
            "items => items.map(i => i.dataset.outcome)"
        )
        assert outcomes and set(outcomes) == {"pass"}, outcomes
        await expect(page.locator("#laptop-state")).to_have_text("Laptop checked: ready")
        await look(page, "device-check")
        await press(page, "#check-continue")

        # Today's consultations: the one booked earlier, with the patient as the referral names her.
        await on_screen(page, "schedule")
        first = page.locator(f'tr[data-consultation-id="{clinic.scene.consultation_id}"]')
        await expect(first.locator("th.patient")).to_have_text(PATIENT)
        await expect(first).to_contain_text(PRISON_NUMBER)
        await expect(first).to_contain_text("3 February 1980")
        await look(page, "schedule")

        await book_for_room(page)
        rows = page.locator("tr[data-consultation-id]")
        await expect(rows).to_have_count(2)
        ids = await rows.evaluate_all("rs => rs.map(r => r.dataset.consultationId)")
        (booked,) = [i for i in ids if i != clinic.scene.consultation_id]
        row = page.locator(f'tr[data-consultation-id="{booked}"]')
        await expect(row).to_contain_text("Booked")
        await look(page, "schedule-booked")

        # Before going live: identity, then consent, by keyboard.
        await press(page, f'tr[data-consultation-id="{booked}"] button[data-action="prepare"]')
        await on_screen(page, "prepare")
        await expect(page.locator("#prepare-title")).to_have_text(f"Before the consultation with {PATIENT}")
        await look(page, "prepare")
        await press(page, '#prepare-steps [data-action="confirm-identity"]')
        await expect(page.locator('#prepare-steps [data-done="identity"]')).to_be_visible()
        await expect(page.locator('#prepare-steps [data-action="record-consent"]')).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator('#prepare-steps [data-done="consent"]')).to_be_visible()
        await look(page, "prepare-done")
        await press(page, "#prepare-go")

        # The call: the room waits; let it in, start, and the pictures flow both ways.
        await on_screen(page, "call")
        await room.wait_joined()
        await room.wait_waiting()
        waiting = page.locator(f'#waiting li[data-participant="{room.participant_id}"]')
        await expect(waiting).to_be_visible(timeout=WAIT_MS)
        await look(page, "call-waiting")
        await press(page, f'#waiting li[data-participant="{room.participant_id}"] [data-action="admit"]')
        await room.wait_admitted()
        tile = f'figure.remote-tile[data-participant="{room.participant_id}"]'
        await video_playing(page, f"{tile} video")
        await room.wait_for_video(frames=10)
        await press(page, "#call-start")
        await page.wait_for_function("() => document.body.dataset.callPhase === 'live'", timeout=WAIT_MS)
        await page.wait_for_function(
            "() => Number(document.getElementById('call-elapsed').dataset.elapsed) >= 1", timeout=WAIT_MS
        )

        # The records beside the call: the PDF drawn in the page.
        records = page.locator("#records")
        await expect(records).to_have_attribute("data-records", "open", timeout=WAIT_MS)
        await press(page, f'li[data-document-id="{document_id}"] button[data-action="open-document"]')
        await page.wait_for_function(
            "() => document.querySelector('#viewer .pdf-pages')?.dataset.rendered === 'true'", timeout=WAIT_MS
        )
        inked = await page.locator("canvas.pdf-page").first.evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++;
                      return dark }"""
        )
        assert inked > 100, "the PDF page was drawn blank"
        await look(page, "call-records")

        # The note: saved, then saved again as a second version.
        await tab_to(page, "#note-text")
        await page.keyboard.type("Reviewed discharge letter with the patient.")
        await press(page, "#note-save")
        editor = page.locator(".note-editor")
        await expect(editor).to_have_attribute("data-version", "1")
        await tab_to(page, "#note-text")
        await page.keyboard.type(" Follow-up in two weeks.")
        await press(page, "#note-save")
        await expect(editor).to_have_attribute("data-version", "2")
        await expect(page.locator("#note-saved")).to_contain_text("version 2")
        await look(page, "call-note")
        await assert_page_holds_no_secret(page, set(running.agent.secrets()) | clinic.secrets)
        secrets = set(running.agent.secrets()) | clinic.secrets

        # End, confirmed in the dialog (whose first focus is the safe choice).
        await press(page, "#call-end")
        await expect(page.locator("#dialog")).to_have_attribute("open", "")
        await expect(page.locator("#dialog-cancel")).to_be_focused()
        await look(page, "call-end-dialog")
        await press(page, "#dialog-confirm")
        await page.wait_for_function("() => document.body.dataset.message === 'ended'", timeout=WAIT_MS)
        await look(page, "ended")
        assert await records.evaluate("r => r.children.length") == 0
        assert await page.locator("canvas, #note-text").count() == 0
        await room.wait_until(lambda s: s.consultation_state == "ended" or s.status == "ended")
        # The agent no longer hands out the document.
        status = await page.evaluate(
            "url => fetch(url, {credentials: 'same-origin'}).then(r => r.status)",
            f"/api/consultations/{booked}/documents/{document_id}/content",
        )
        assert status in (403, 409, 410), status
        await assert_page_holds_no_secret(page, secrets)
        watch.assert_clean(allow=EXPECTED_ERRORS)

    everything = "\n".join(wire.texts)
    leaked = [s[:10] for s in secrets if s and s in everything]
    assert not leaked, f"tokens reached the page: {leaked}"
    for name in ("posture_token", "posture_proof", "join_token", "resume_token", "access_token"):
        assert name not in everything, f"{name} reached the page"
    assert {"offer", "answer", "ice"} & wire.bridge_types, wire.bridge_types


async def test_a_laptop_that_fails_its_check_shows_the_fix_and_reaches_nothing(clinic: Clinic) -> None:
    with clinic.agent("sim-pin-off") as failing:
        async with launched_chromium() as browser, watched_page(browser) as (page, watch):
            await page.goto(failing.launch_url)
            await on_screen(page, "signin")
            await page.fill("#signin-username", "doctor")
            await page.fill("#signin-password", PASSWORD)
            await page.keyboard.press("Enter")
            await on_screen(page, "device-check")
            await page.wait_for_function(
                "() => document.querySelector('section[data-screen=device-check]').dataset.result === 'fail'",
                timeout=WAIT_MS,
            )
            await expect(page.locator("#check-title")).to_have_text(
                "This laptop cannot be used for consultations yet"
            )
            failed = page.locator('#check-rules li[data-outcome="fail"]')
            assert await failed.count() >= 1
            # Failures come first, each with the fix in words from the policy.
            first = page.locator("#check-rules li[data-rule-id]").first
            await expect(first).to_have_attribute("data-outcome", "fail")
            await expect(first.locator(".rule-fix")).to_contain_text("How to fix it:")
            await expect(first.locator(".rule-actual")).to_have_text("Found: none")  # plain words, not []
            ids = await failed.evaluate_all("items => items.map(i => i.dataset.ruleId)")
            assert any("sim" in i for i in ids), ids
            await expect(page.locator("#check-continue")).to_be_hidden()
            await expect(page.locator("#check-again")).to_be_visible()
            await expect(page.locator("#laptop-state")).to_have_text("Laptop not ready")
            await look(page, "device-check-failed")

            # Nothing else answers: not the schedule, not a patient, not a booking.
            day = date.today().isoformat()
            answers: dict[str, Any] = await page.evaluate(
                """async day => {
                    const get = async (url, init) => { const r = await fetch(url, init);
                        return [r.status, (await r.json()).code] };
                    return {
                      schedule: await get(`/api/schedule?day=${day}`),
                      lookup: await get('/api/patients/lookup?prison_number=A1234BC'),
                      book: await get('/api/consultations', {method: 'POST',
                        headers: {'Content-Type': 'application/json'}, body: '{}'}),
                    } }""",
                day,
            )
            for name, (status, code) in answers.items():
                assert status == 403 and code == "device_not_compliant", (name, status, code)
            # Nor can it join a call: the bridge says why and closes.
            joined: dict[str, Any] = await page.evaluate(
                """id => new Promise(resolve => {
                    const ws = new WebSocket(`ws://${location.host}/api/signalling`);
                    let said = null;
                    ws.onopen = () => ws.send(JSON.stringify({type: 'join', consultation_id: id}));
                    ws.onmessage = e => { said = JSON.parse(e.data) };
                    ws.onclose = e => resolve({code: e.code, said});
                })""",
                clinic.scene.consultation_id,
            )
            assert joined["said"] == {
                "type": "error",
                "code": "device_not_compliant",
                "message": joined["said"]["message"],
            }, joined
            assert joined["code"] == 4403, joined

            # Checking again without a fix gives the same answer and keeps the way closed.
            await press(page, "#check-again")
            await page.wait_for_function(
                "() => document.querySelector('section[data-screen=device-check]').dataset.result === 'fail'",
                timeout=WAIT_MS,
            )
            await expect(page.locator("#check-again")).to_be_focused()
            await assert_page_holds_no_secret(page, set(failing.agent.secrets()) | clinic.secrets)
            watch.assert_clean(allow=EXPECTED_ERRORS)
