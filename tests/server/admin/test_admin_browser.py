"""The admin console in real Chromium, the way an admin uses it: signing in with a TOTP code from
the secret the enrolment shows (pyotp plays the phone), finding the document read of a consultation
run in this module through the SDK, signing off a break-glass access, seeing the rule a laptop
failed, and the integrity alarm after an audit row is changed behind the trigger's back.

One server (uvicorn in a thread, SQLite, development mode so the SDK's simulated posture is
accepted) and one browser for the module; the tests run in order and build on each other, as a
working day does. axe-core runs on every screen (no serious or critical violation) and every
screen is photographed to test-artifacts/admin/.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, expect
from sqlalchemy import text

from clinic_client.posture import PostureAgent, PostureCheckFailed, SimulatedSource
from clinic_client.records import Grant, RecordsClient
from device_policy.keys import generate_device_key, public_key_b64
from server.app import create_app
from server.consultations import service as consultations
from server.db import session_scope, utcnow
from server.devices.models import Device, DeviceKind
from server.identity.models import Role
from server.services import Services
from server.settings import Environment
from tests.conftest import make_settings
from tests.server.factories import PASSWORD, add_user
from tests.support.axe import check_accessibility, screenshot
from tests.support.browser import PageWatch, launched_chromium, require_chromium, watched_page
from tests.support.documents import ImportedDocument, import_pdf
from tests.support.live_server import LiveServer
from tests.support.services import free_port
from tests.support.signalling_scene import Enrolled, add_patient, enrol_device

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

AREA = "admin"
WAIT_MS = 10_000
# The page asks for its session on load; before sign-in the answer is 401, which Chromium logs.
HTTP_ERROR_LOG = "Failed to load resource"
SIMULATOR_IDS = {"imei": "356938035643809", "iccid": "8944000000000000001", "imsi": "234150000000001"}
BREAK_GLASS_REASON = "Found unresponsive in cell, needs allergy history before paramedics arrive"


@dataclass
class World:
    """The running server, the people and devices in it, and what the tests did so far."""

    server: LiveServer
    services: Services
    patient_id: str
    laptop: Enrolled
    failing_laptop: Enrolled
    consultation_id: str
    secret: str = ""
    last_code_at: float = 0.0
    document: ImportedDocument | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.base_url

    def next_code(self) -> str:
        """A code the server has not seen: one step after the last one given, like a patient admin."""
        self.last_code_at = max(time.time(), self.last_code_at + 30)
        return pyotp.TOTP(self.secret).at(self.last_code_at)


def _enrol_laptop(services: Services, device_id: str) -> Enrolled:
    enrolled = enrol_device(services, device_id, DeviceKind.PRISON_LAPTOP)
    with session_scope(services.engine) as session:
        device = session.get(Device, device_id)
        assert device is not None
        for name, value in SIMULATOR_IDS.items():
            setattr(device, name, value)
    return enrolled


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[World]:
    """A server with an admin (no second factor yet), a GP, a patient, two laptops, a live consultation."""
    require_chromium()
    workdir = tmp_path_factory.mktemp("admin-browser")
    shutil.copyfile(sqlite_template, workdir / "telemed.db")
    port = free_port()
    settings = make_settings(
        f"sqlite:///{workdir / 'telemed.db'}",
        workdir / "data",
        environment=Environment.DEVELOPMENT,
        public_url=f"http://127.0.0.1:{port}",
    )
    services = Services.build(settings)
    server = LiveServer(create_app(settings, services=services), port=port).start()
    try:
        add_user(services, "root", role=Role.ADMIN, display_name="Ada Admin", establishment="HMP Example")
        host = add_user(services, "doctor", role=Role.CLINICIAN, display_name="Dr Hannah Host")
        patient_id = add_patient(services)
        with session_scope(services.engine) as session:
            start = utcnow() - timedelta(minutes=5)
            booked = consultations.schedule_consultation(
                session=session,
                patient_id=patient_id,
                host_user_id=host,
                room_device_id=None,
                specialist=("Dr Sam Specialist", None),
                start=start,
                end=start + timedelta(hours=1),
                created_by=host,
            )
            consultation_id = booked.id
        yield World(
            server=server,
            services=services,
            patient_id=patient_id,
            laptop=_enrol_laptop(services, "laptop-01"),
            failing_laptop=_enrol_laptop(services, "laptop-02"),
            consultation_id=consultation_id,
        )
    finally:
        server.stop()
        services.engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as launched:
        yield launched


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(browser: Browser, world: World) -> AsyncIterator[tuple[Page, PageWatch]]:
    """The admin's browser tab, kept for the whole module (signed in by the first test)."""
    async with watched_page(browser) as (page, watch):
        yield page, watch
        watch.assert_clean(allow=(HTTP_ERROR_LOG,))


async def audit(page: Page, name: str) -> None:
    """axe-core on the screen as it is now, and its screenshot."""
    await check_accessibility(page, name=f"{AREA}/{name}")
    await screenshot(page, AREA, name)


async def on_screen(page: Page, name: str) -> None:
    await expect(page.locator("body")).to_have_attribute("data-screen", name, timeout=WAIT_MS)


def screen(page: Page, name: str) -> Locator:
    """The section of one screen (every screen is in the page; the others are hidden)."""
    return page.locator(f'section[data-screen="{name}"]')


async def go(page: Page, screen: str) -> None:
    """Use the navigation, as a person would."""
    await page.locator(f'nav [data-nav="{screen}"]').click()
    await on_screen(page, screen)


# --- The SDK side: what happens on the prison laptops --------------------------------------------


async def clinician_token(world: World) -> str:
    async with httpx.AsyncClient(base_url=world.url) as http:
        answer = await http.post("/api/v1/auth/login", json={"username": "doctor", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


async def admin_api_token(world: World) -> str:
    async with httpx.AsyncClient(base_url=world.url) as http:
        answer = await http.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


def go_live(world: World) -> None:
    """The host joins, confirms identity, records consent and starts (the consultation service)."""
    with session_scope(world.services.engine) as session:
        row = consultations.get_consultation(session=session, consultation_id=world.consultation_id)
        host = row.host_user_id
        consultations.mark_host_present(session=session, consultation=row)
        consultations.confirm_identity(session=session, consultation=row, by_user_id=host)
        consultations.record_consent(
            session=session, consultation=row, by_user_id=host, consent="verbal", note=None
        )
        consultations.start_consultation(session=session, consultation=row, by_user_id=host)


async def read_in_consultation(world: World) -> None:
    """The GP, on the compliant laptop, gets a grant in the live consultation and reads the letter."""
    world.document = await import_pdf(world.url, await admin_api_token(world), world.patient_id)
    go_live(world)
    access = await clinician_token(world)
    async with PostureAgent(
        server_url=world.url,
        device_id=world.laptop.id,
        private_key=world.laptop.key,
        source=SimulatedSource("compliant"),
    ) as agent:
        records = RecordsClient(
            server_url=world.url, access_token=access, posture=agent, private_key=world.laptop.key
        )
        try:
            grant = await records.grant(world.consultation_id)
            content = await records.read_document(grant, world.document.id)
        finally:
            await records.aclose()
    assert content == world.document.content


async def break_glass(world: World) -> str:
    """The GP breaks the glass for the patient (no consultation) and reads the letter under it."""
    assert world.document is not None
    access = await clinician_token(world)
    async with PostureAgent(
        server_url=world.url,
        device_id=world.laptop.id,
        private_key=world.laptop.key,
        source=SimulatedSource("compliant"),
    ) as agent:
        await agent.attest()
        url = f"{world.url}/api/v1/records/break-glass"
        async with httpx.AsyncClient() as http:
            opened = await http.post(
                url,
                json={"patient_id": world.patient_id, "reason": BREAK_GLASS_REASON},
                headers={"Authorization": f"Bearer {access}", **agent.request_headers("POST", url)},
            )
        assert opened.status_code == 201, opened.text
        records = RecordsClient(
            server_url=world.url, access_token=access, posture=agent, private_key=world.laptop.key
        )
        try:
            await records.read_document(Grant.from_wire(opened.json()), world.document.id)
        finally:
            await records.aclose()
    return str(opened.json()["access_id"])


async def fail_posture(world: World) -> None:
    """The second laptop reports its SIM PIN lock off: the check fails on rule sim-pin-lock."""
    async with PostureAgent(
        server_url=world.url,
        device_id=world.failing_laptop.id,
        private_key=world.failing_laptop.key,
        source=SimulatedSource("sim-pin-off"),
    ) as agent:
        with pytest.raises(PostureCheckFailed) as failed:
            await agent.attest()
    assert [rule.id for rule in failed.value.failed_rules] == ["sim-pin-lock"]


def read_seq(world: World) -> int:
    """The audit entry of the GP's document read in the consultation."""
    with world.services.engine.connect() as conn:
        seq = conn.execute(
            text(
                "SELECT seq FROM audit_entries WHERE action = 'document.read' "
                "AND consultation_id = :c ORDER BY seq DESC LIMIT 1"
            ),
            {"c": world.consultation_id},
        ).scalar_one()
    return int(seq)


def tamper(world: World, seq: int) -> None:
    """An insider with database rights: drop the append-only trigger, change who read the letter."""
    with world.services.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS audit_entries_no_update"))
        conn.execute(text("UPDATE audit_entries SET actor_id = 'nobody' WHERE seq = :seq"), {"seq": seq})


# --- The admin's side: the console in Chromium ------------------------------------------------------


async def test_sign_in_sets_up_totp_then_signs_in_with_a_code(
    world: World, console: tuple[Page, PageWatch]
) -> None:
    page, _watch = console
    await page.goto(f"{world.url}/admin")
    await on_screen(page, "sign-in")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the admin console")
    await audit(page, "sign-in")

    # A wrong password is said plainly, and the page stays where it was.
    signin = screen(page, "sign-in")
    await signin.get_by_label("Username").fill("root")
    await signin.get_by_label("Password").fill("not the password")
    await signin.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in-error")).to_have_text(
        "The username or password is not right. Check them and try again."
    )
    await audit(page, "sign-in-error")

    await signin.get_by_label("Password").fill(PASSWORD)
    await signin.get_by_role("button", name="Sign in").click()
    await on_screen(page, "enrol")
    qr = page.get_by_role("img", name="QR code that adds telemed to your authenticator app")
    await expect(qr).to_be_visible()
    await page.wait_for_function("() => document.getElementById('enrol-qr').naturalWidth > 0")
    world.secret = str(await page.locator("#enrol-secret").get_attribute("data-secret"))
    assert len(world.secret) == 32
    await audit(page, "enrol")

    # The phone: pyotp with the secret the page showed.
    world.last_code_at = time.time()
    await (
        screen(page, "enrol")
        .get_by_label("6-digit code")
        .fill(pyotp.TOTP(world.secret).at(world.last_code_at))
    )
    await page.get_by_role("button", name="Finish setting up").click()
    await on_screen(page, "recovery-codes")
    codes = await page.locator("[data-recovery-code]").all_text_contents()
    assert len(codes) == 10
    world.notes["recovery_code"] = codes[0]
    continue_button = page.get_by_role("button", name="Continue to the console")
    await expect(continue_button).to_be_disabled()
    await audit(page, "recovery-codes")
    await page.get_by_label("I have saved my recovery codes").check()
    await continue_button.click()
    await on_screen(page, "home")
    await expect(page.locator("#who")).to_have_text("Signed in as Ada Admin")
    await audit(page, "home")

    # Out, and in again by keyboard alone: focus goes where the next thing to type is.
    await page.get_by_role("button", name="Sign out").click()
    await on_screen(page, "sign-in")
    await expect(page.locator("#sign-in-reason")).to_have_text("You have signed out.")
    await page.keyboard.type("root")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await on_screen(page, "second-factor")
    await expect(page.locator("#code-input")).to_be_focused()
    await audit(page, "second-factor")
    await page.keyboard.type(world.next_code())
    await page.keyboard.press("Enter")
    await on_screen(page, "home")


async def test_audit_search_finds_the_document_read_of_the_consultation(
    world: World, console: tuple[Page, PageWatch]
) -> None:
    page, _watch = console
    await read_in_consultation(world)
    assert world.document is not None
    await go(page, "audit")
    await audit(page, "audit-search")
    form = screen(page, "audit")
    await form.get_by_label("Patient").fill("A1234BC")
    await form.get_by_label("Action").fill("document.read")
    await form.get_by_role("button", name="Search", exact=True).click()
    row = page.locator('#audit-table tr[data-action="document.read"]')
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    await expect(row).to_contain_text("Dr Hannah Host (doctor)")
    await expect(row).to_contain_text("Allowed")
    await expect(row).to_contain_text(world.consultation_id[:8])
    await expect(row).to_contain_text("Treatment")
    await expect(row).to_contain_text("laptop-01")
    await audit(page, "audit-results")
    csv_link = await page.locator("#audit-csv").get_attribute("href")
    assert csv_link is not None and "format=csv" in csv_link and "patient=A1234BC" in csv_link
    exported = await page.request.get(f"{world.url}{csv_link}")
    assert exported.ok and world.consultation_id in await exported.text()

    seq = await row.get_attribute("data-seq")
    await row.locator("button[data-open-seq]").click()
    await on_screen(page, "entry")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Audit entry {seq}: Read a document")
    await expect(page.locator("#entry-intact")).to_have_attribute("data-intact", "true")
    await expect(page.locator("#entry-facts")).to_contain_text(world.document.id)
    await audit(page, "entry")

    await page.get_by_role("button", name="Who accessed A1234BC’s record").click()
    await on_screen(page, "patient-accesses")
    accesses = page.locator("#accesses-table tbody tr")
    await expect(accesses.filter(has_text="Read a document")).to_have_count(1)
    await expect(accesses.filter(has_text="Was given record access")).to_have_count(1)
    # An access outside any consultation shows a dash, never a programming word.
    cells = await page.locator("#accesses-table td").all_inner_texts()
    assert "None" not in cells and "null" not in cells and "undefined" not in cells
    await audit(page, "patient-accesses")
    assert seq == str(read_seq(world))


async def test_a_break_glass_access_is_reviewed(world: World, console: tuple[Page, PageWatch]) -> None:
    page, _watch = console
    access_id = await break_glass(world)
    await page.goto(f"{world.url}/admin#/home")
    await on_screen(page, "home")
    await expect(page.locator("#home-next")).to_contain_text(
        "1 break-glass access is waiting for your review."
    )
    await page.get_by_role("link", name="Review them now").click()
    await on_screen(page, "reviews")
    card = page.locator(f'[data-access-id="{access_id}"]')
    await expect(card).to_contain_text(BREAK_GLASS_REASON)
    await expect(card).to_contain_text("Dr Hannah Host (doctor) opened the record of A1234BC")
    await expect(card).to_contain_text("Read a document")
    outside = page.locator('#outside-table tr[data-action="document.read"]')
    await expect(outside).to_contain_text("Part of a break-glass access")
    await audit(page, "reviews")

    await card.get_by_role("button", name="Mark as reviewed").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Comment (optional)").fill("Confirmed with the wing: emergency call at 02:10.")
    await audit(page, "reviews-sign-off")
    await dialog.get_by_role("button", name="Mark as reviewed").click()
    await expect(page.locator("#status")).to_have_text(
        "the break-glass access by Dr Hannah Host (doctor) marked as reviewed."
    )
    await expect(card).to_have_count(0)
    await expect(page.locator('[data-empty="break-glass"]')).to_be_visible()
    await audit(page, "reviews-done")


async def test_a_failed_device_check_shows_its_failing_rule_and_a_device_is_enrolled(
    world: World, console: tuple[Page, PageWatch]
) -> None:
    page, _watch = console
    await fail_posture(world)
    await go(page, "devices")
    failing = page.locator('tr[data-device-id="laptop-02"]')
    await expect(failing.locator("[data-check-outcome]")).to_have_attribute("data-check-outcome", "fail")
    await expect(failing.locator('li[data-rule="sim-pin-lock"]')).to_contain_text(
        "SIM PIN lock is on (sim-pin-lock)"
    )
    await expect(failing).to_contain_text("Turn on the SIM PIN lock")
    await expect(page.locator('tr[data-device-id="laptop-01"] [data-check-outcome]')).to_have_attribute(
        "data-check-outcome", "pass"
    )
    await audit(page, "devices")

    key = public_key_b64(generate_device_key().public_key())
    printed = (
        "Private key written to /home/clinic/.config/telemed/device-key.pem (mode 600).\n"
        "Give the admin this line (fill in anything in <>):\n"
        f"telemed device enrol room-hmp-example-07 --kind room_endpoint --public-key {key} "
        "--serial <serial> --model 'NUC 13 Pro'\n"
    )
    devices = screen(page, "devices")
    await devices.get_by_label("What telemed-device enrol printed on the device").fill(printed)
    await devices.get_by_role("button", name="Read it").click()
    serial = devices.get_by_label("Serial number")
    await expect(serial).to_be_focused()
    await expect(serial).to_have_attribute("aria-invalid", "true")
    await expect(devices.get_by_label("Device id")).to_have_value("room-hmp-example-07")
    await audit(page, "devices-enrol")
    await serial.fill("NUC-0007")
    await devices.get_by_label("Prison").fill("HMP Example")
    await devices.get_by_role("button", name="Enrol this device").click()
    await expect(page.locator("#status")).to_have_text(
        "room-hmp-example-07 is enrolled. It can now run its device check."
    )
    await expect(page.locator('tr[data-device-id="room-hmp-example-07"]')).to_contain_text("No check yet")


async def test_users_and_the_days_consultations(world: World, console: tuple[Page, PageWatch]) -> None:
    page, _watch = console
    await go(page, "users")
    me = page.locator('tr[data-username="root"]')
    await expect(me).to_contain_text("This is you")
    await expect(me.get_by_role("button", name="Disable Ada Admin")).to_have_count(0)
    users = screen(page, "users")
    await users.get_by_label("Full name").fill("Nia Nurse")
    await users.get_by_label("Username").fill("nia.nurse")
    await users.get_by_role("button", name="Add user").click()
    created = page.locator("#user-created")
    await expect(created).to_contain_text("Nia Nurse can now sign in")
    password = await created.locator("[data-password]").text_content()
    assert password and len(password) >= 12
    await audit(page, "users")

    await go(page, "consultations")
    live = page.locator(f'tr[data-consultation-id="{world.consultation_id}"]')
    await expect(live).to_have_attribute("data-state", "live")
    await expect(live).to_contain_text("Dr Hannah Host")
    await audit(page, "consultations")


async def test_a_tampered_audit_row_turns_the_integrity_status_to_failed(
    world: World, console: tuple[Page, PageWatch]
) -> None:
    page, _watch = console
    assert world.services.records is not None
    world.services.records.checkpoint()
    await go(page, "integrity")
    box = page.locator("#integrity-box")
    await page.get_by_role("button", name="Check the audit log now").click()
    await expect(box).to_have_attribute("data-integrity", "ok", timeout=WAIT_MS)
    await expect(page.locator("#integrity-headline")).to_have_text("The audit log is intact")
    await expect(page.locator("#integrity-summary")).to_contain_text("all")
    await expect(page.locator("#integrity-facts")).to_contain_text("Verifies up to entry")
    await expect(page.locator("#integrity-facts")).to_contain_text("signed at")
    await audit(page, "integrity-ok")

    seq = read_seq(world)
    tamper(world, seq)
    await page.get_by_role("button", name="Check the audit log now").click()
    await expect(box).to_have_attribute("data-integrity", "failed", timeout=WAIT_MS)
    await expect(page.locator("#integrity-headline")).to_have_text(
        "Alarm: the audit log has been tampered with"
    )
    await expect(page.locator("#integrity-summary")).to_contain_text(
        f"Entry {seq} has been changed since it was written."
    )
    await expect(page.get_by_role("alert")).to_contain_text("Do not rely on this audit log")
    await audit(page, "integrity-failed")

    await go(page, "home")
    await expect(page.locator("#home-next")).to_contain_text("The audit log has been tampered with.")
    await audit(page, "home-alarm")
    # The changed entry is marked wherever it shows.
    await page.goto(f"{world.url}/admin#/entry?seq={seq}")
    await expect(page.locator("#entry-intact")).to_have_attribute("data-intact", "false")
    await audit(page, "entry-tampered")


async def test_an_idle_session_warns_then_signs_out(world: World, console: tuple[Page, PageWatch]) -> None:
    page, _watch = console
    settings = world.services.settings
    default_idle = settings.admin_idle_timeout
    try:
        # A short idle timeout (the page learns it from its session): warned after 1 s, out after 3 s.
        settings.admin_idle_timeout = timedelta(seconds=3)
        await go(page, "home")
        await page.reload()
        await on_screen(page, "home")
        warning = page.get_by_role("dialog", name="Are you still there?")
        await expect(warning).to_be_visible(timeout=WAIT_MS)
        await expect(page.get_by_role("button", name="Stay signed in")).to_be_focused()
        await audit(page, "idle-warning")
        await on_screen(page, "sign-in")
        await expect(page.locator("#sign-in-reason")).to_have_text(
            "You were signed out because nothing happened for a while. Please sign in again."
        )
    finally:
        settings.admin_idle_timeout = default_idle
    # Signing in again needs both factors again; without the phone, one of the recovery codes.
    signin = screen(page, "sign-in")
    await signin.get_by_label("Username").fill("root")
    await signin.get_by_label("Password").fill(PASSWORD)
    await signin.get_by_role("button", name="Sign in").click()
    await on_screen(page, "second-factor")
    second = screen(page, "second-factor")
    await second.get_by_role("button", name="I do not have my phone").click()
    await expect(second.get_by_label("Recovery code")).to_be_focused()
    await audit(page, "second-factor-recovery")
    await second.get_by_label("Recovery code").fill(world.notes["recovery_code"])
    await second.get_by_role("button", name="Continue").click()
    await on_screen(page, "home")
