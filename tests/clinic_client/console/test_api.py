"""The agent's JSON API against a real telemed server: sign-in, device check, the day's work."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tests.clinic_client.console.conftest import Clinic, Page, assert_no_secrets
from tests.server.factories import PASSWORD


async def test_sign_in_and_device_check_show_who_and_every_rule_and_no_token(
    page: Page, clinic: Clinic
) -> None:
    before = (await page.get("/api/state")).json()
    assert before["signed_in"] is False and before["user"] is None and before["posture"] is None
    assert before["device"] == {"id": clinic.laptop.id, "kind": "prison_laptop"}
    assert before["server_url"] == clinic.server_url

    state = await page.sign_in()
    assert state["signed_in"] is True
    assert state["user"]["username"] == "doctor"
    assert state["user"]["display_name"] == "Dr Host"
    assert state["user"]["role"] == "clinician"
    assert set(state["user"]) == {"id", "username", "display_name", "role"}

    check = await page.post("/api/device-check")
    assert check.status_code == 200
    posture = check.json()
    assert posture["compliant"] is True
    assert posture["error"] is None
    assert datetime.fromisoformat(posture["expires_at"]) > datetime.now(UTC)
    assert posture["policy_version"]
    rules = {rule["id"]: rule for rule in posture["rules"]}
    assert "sim-pin-lock" in rules
    assert all(rule["outcome"] == "pass" for rule in posture["rules"] if rule["id"] == "sim-pin-lock")
    assert (await page.get("/api/state")).json()["posture"] == posture
    assert_no_secrets(clinic)


async def test_a_wrong_password_then_a_locked_account_in_plain_words(page: Page) -> None:
    wrong = await page.post("/api/sign-in", json={"username": "doctor", "password": "not it at all"})
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_credentials"
    assert "not it at all" not in wrong.text
    for _ in range(2):
        await page.post("/api/sign-in", json={"username": "doctor", "password": "still wrong"})
    locked = await page.post("/api/sign-in", json={"username": "doctor", "password": PASSWORD})
    assert locked.status_code == 429
    body = locked.json()
    assert body["code"] == "login_throttled"
    assert body["retry_after_s"] > 0
    assert locked.headers["retry-after"] == str(body["retry_after_s"])
    assert (await page.get("/api/state")).json()["signed_in"] is False


async def test_only_clinicians_may_use_the_console(page: Page) -> None:
    for username in ("root", "dr.special"):
        refused = await page.post("/api/sign-in", json={"username": username, "password": PASSWORD})
        assert refused.status_code == 403, username
        assert refused.json()["code"] == "not_a_clinician"
        assert (await page.get("/api/state")).json()["signed_in"] is False


async def test_a_laptop_without_its_sim_pin_lock_sees_the_rule_and_its_fix_and_can_do_nothing(
    clinic: Clinic,
) -> None:
    with clinic.agent("sim-pin-off") as running:
        async with Page(running, clinic) as page:
            await page.sign_in()
            check = await page.post("/api/device-check")
            assert check.status_code == 200
            posture = check.json()
            assert posture["compliant"] is False
            assert posture["expires_at"] is None
            assert posture["error"]["code"] == "policy_failed"
            failed = [rule for rule in posture["rules"] if rule["outcome"] == "fail"]
            assert [rule["id"] for rule in failed] == ["sim-pin-lock"]
            assert failed[0]["remediation"] and "PIN" in failed[0]["remediation"]
            assert failed[0]["title"]
            assert any(rule["outcome"] == "pass" for rule in posture["rules"])
            assert (await page.get("/api/state")).json()["posture"]["compliant"] is False
            refusals = [
                await page.get("/api/rooms"),
                await page.get("/api/schedule"),
                await page.get("/api/patients/lookup", params={"prison_number": "A1234BC"}),
                await page.post(
                    "/api/consultations",
                    json={
                        "patient_id": clinic.scene.patient_id,
                        "start": datetime.now(UTC).isoformat(),
                        "minutes": 30,
                    },
                ),
                await page.get(f"/api/consultations/{clinic.scene.consultation_id}/records"),
            ]
            for response in refusals:
                assert response.status_code == 403, response.request.url
                assert response.json()["code"] == "device_not_compliant"
                assert "device check" in response.json()["detail"]
    assert_no_secrets(clinic)


async def test_booking_identity_consent_and_invite_through_the_agent(page: Page, clinic: Clinic) -> None:
    await page.ready()
    patient = await page.get("/api/patients/lookup", params={"prison_number": "A1234BC"})
    assert patient.status_code == 200
    assert patient.json() == {
        "id": clinic.scene.patient_id,
        "name": "Ada Quillfeather",
        "prison_number": "A1234BC",
        "date_of_birth": "1980-02-03",
    }
    unknown = await page.get("/api/patients/lookup", params={"prison_number": "Z9999ZZ"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"

    start = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    booked = await page.post(
        "/api/consultations",
        json={
            "patient_id": clinic.scene.patient_id,
            "room_device_id": clinic.scene.room.id,
            "start": start.isoformat(),
            "minutes": 45,
            "specialist_name": "Dr Sam Specialist",
        },
    )
    assert booked.status_code == 201, booked.text
    consultation = booked.json()
    assert consultation["state"] == "scheduled"
    assert consultation["room_device_id"] == clinic.scene.room.id
    assert consultation["specialist_name"] == "Dr Sam Specialist"
    assert consultation["room_device_id"] == clinic.scene.room.id
    assert consultation["specialist_name"] == "Dr Sam Specialist"
    assert datetime.fromisoformat(consultation["scheduled_start"]) == start
    assert datetime.fromisoformat(consultation["scheduled_end"]) == start + timedelta(minutes=45)
    cid = consultation["id"]

    too_long = await page.post(
        "/api/consultations",
        json={"patient_id": clinic.scene.patient_id, "start": start.isoformat(), "minutes": 600},
    )
    assert too_long.status_code == 422 and too_long.json()["code"] == "invalid_request"

    identity = await page.post(f"/api/consultations/{cid}/identity-check")
    assert identity.status_code == 200
    body = identity.json()
    assert set(body) == {"name", "prison_number", "date_of_birth", "identity_confirmed_at"}
    assert body["name"] == "Ada Quillfeather" and body["date_of_birth"] == "1980-02-03"

    consent = await page.post(f"/api/consultations/{cid}/consent", json={"note": "Agreed on the phone"})
    assert consent.status_code == 200
    assert consent.json()["consent_recorded_at"] is not None

    invite = await page.post(f"/api/consultations/{cid}/invites", json={})
    assert invite.status_code == 201
    created = invite.json()
    assert set(created) == {"invite_id", "name", "expires_at", "link"}
    assert created["name"] == "Dr Sam Specialist"
    assert "/join#inv_" in created["link"]  # the public URL is the settings' own

    cancelled = await page.post(f"/api/consultations/{cid}/cancel", json={"reason": "patient transferred"})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = await page.post(f"/api/consultations/{cid}/cancel", json={"reason": "twice"})
    assert again.status_code == 409 and again.json()["code"] == "invalid_state"
    assert_no_secrets(clinic)


async def test_schedule_and_rooms_are_the_servers_lists(page: Page, clinic: Clinic) -> None:
    await page.ready()
    schedule = await page.get("/api/schedule")
    assert schedule.status_code == 200, schedule.text
    ids = [item["id"] for item in schedule.json()]
    assert clinic.scene.consultation_id in ids
    item = next(i for i in schedule.json() if i["id"] == clinic.scene.consultation_id)
    assert item["patient"]["name"] == "Ada Quillfeather"
    assert item["room"]["id"] == clinic.scene.room.id
    other_day = await page.get(
        "/api/schedule", params={"day": (date.today() + timedelta(days=3)).isoformat()}
    )
    assert other_day.status_code == 200 and other_day.json() == []
    rooms = await page.get("/api/rooms")
    assert rooms.status_code == 200
    assert clinic.scene.room.id in [room["id"] for room in rooms.json()]
    assert clinic.laptop.id not in [room["id"] for room in rooms.json()]


async def test_signing_out_forgets_the_session(page: Page) -> None:
    await page.ready()
    assert (await page.post("/api/sign-out")).status_code == 204
    assert (await page.get("/api/state")).json()["signed_in"] is False
    after = await page.get("/api/rooms")
    assert after.status_code == 401 and after.json()["code"] == "not_signed_in"
    assert page.thread.agent.secrets() == [page.thread.agent.posture.agent.current.token]  # type: ignore[union-attr]


async def test_the_access_token_is_refreshed_before_it_lapses(clinic: Clinic) -> None:
    # A margin as long as the token's life: every call refreshes first.
    with clinic.agent(refresh_margin=timedelta(minutes=15)) as running:
        async with Page(running, clinic) as page:
            await page.ready()
            first = running.agent.secrets()
            assert (await page.get("/api/rooms")).status_code == 200
            assert (await page.get("/api/rooms")).status_code == 200
            assert running.agent.signed_in
            assert not set(first[:2]) & set(running.agent.secrets())


async def test_the_agent_re_attests_by_itself_while_signed_in(clinic: Clinic) -> None:
    # A margin as long as the posture token's life: the background keeper re-attests at once.
    with clinic.agent(reattest_margin=timedelta(minutes=5)) as running:
        async with Page(running, clinic) as page:
            await page.ready()
            first = (await page.get("/api/state")).json()["posture"]["checked_at"]
            deadline = datetime.now(UTC) + timedelta(seconds=30)
            while (await page.get("/api/state")).json()["posture"]["checked_at"] == first:
                assert datetime.now(UTC) < deadline, "no re-attestation"
                await __import__("asyncio").sleep(0.2)
            assert (await page.get("/api/state")).json()["posture"]["compliant"] is True
