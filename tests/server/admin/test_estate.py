"""Devices (last posture check with its failing rules; enrolment from pasted text; revoke), users
(create with a one-time password, disable but never oneself, re-enable, reset the second factor)
and the day's consultations (cancel, no-show) in the console."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session

from device_policy.keys import generate_device_key, public_key_b64
from records.audit.log import iter_entries
from server.consultations.models import Consultation
from server.db import session_scope, utcnow
from server.services import Services
from tests.server.admin.conftest import Clinic, problem
from tests.server.devices.helpers import attest, collected_facts
from tests.server.factories import login


def test_devices_show_their_last_check_and_its_failing_rules(clinic: Clinic) -> None:
    ward = clinic.ward
    failed = attest(
        ward.client,
        "laptop-02",
        ward.laptop2.key,
        facts=collected_facts("sim-pin-off", device_id="laptop-02"),
    )
    assert failed.status_code == 403, failed.text
    answer = clinic.console.get("/admin/api/devices")
    assert answer.status_code == 200
    devices = {d["id"]: d for d in answer.json()}
    assert set(devices) == {"laptop-01", "laptop-02", "room-01"}
    bad = devices["laptop-02"]["last_check"]
    assert bad["outcome"] == "fail" and bad["code"] == "policy_failed"
    assert bad["failed_rules"] == [
        {
            "id": "sim-pin-lock",
            "title": "SIM PIN lock is on",
            "remediation": bad["failed_rules"][0]["remediation"],
        }
    ]
    assert bad["failed_rules"][0]["remediation"].startswith("Turn on the SIM PIN lock")
    good = devices["laptop-01"]["last_check"]
    assert good["outcome"] == "pass" and good["failed_rules"] == []
    assert devices["room-01"]["kind"] == "room_endpoint" and devices["room-01"]["status"] == "active"


# What `telemed-device enrol` prints, line for line.
PRINTED = """Private key written to /home/clinic/.config/telemed/device-key.pem (mode 600). Keep it on this device only.
 device id   laptop-hmp-example-09
 kind        prison_laptop
 public key  {key}
 thumbprint  E5j-Viz87RhhiC71ONRc5y4mLsau3W3kqZHTnc59ZGk
 serial      (not readable here)
 model       Latitude 7440 Rugged
 imei        490154203237518
 iccid       8944100000000000017
 imsi        234150999999999

Give the admin this line (fill in anything in <>):
telemed device enrol laptop-hmp-example-09 --kind prison_laptop --public-key {key} --serial <serial> --model 'Latitude 7440 Rugged' --imei 490154203237518 --iccid 8944100000000000017 --imsi 234150999999999
"""  # noqa: E501


def test_enrol_from_what_telemed_device_printed_then_revoke(clinic: Clinic, services: Services) -> None:
    key = public_key_b64(generate_device_key().public_key())
    parsed = clinic.console.post("/admin/api/devices/parse", json={"text": PRINTED.format(key=key)})
    assert parsed.status_code == 200, parsed.text
    fields = parsed.json()["fields"]
    assert fields == {
        "id": "laptop-hmp-example-09",
        "kind": "prison_laptop",
        "public_key": key,
        "model": "Latitude 7440 Rugged",
        "imei": "490154203237518",
        "iccid": "8944100000000000017",
        "imsi": "234150999999999",
    }
    assert parsed.json()["missing"] == ["serial"]
    only_line = PRINTED.format(key=key).splitlines()[-1]
    assert (
        clinic.console.post("/admin/api/devices/parse", json={"text": only_line}).json()["fields"] == fields
    )
    garbage = clinic.console.post("/admin/api/devices/parse", json={"text": "hello"})
    assert garbage.status_code == 422 and problem(garbage)["code"] == "enrolment_text_invalid"

    body = {**fields, "serial": "5CG1234XYZ", "establishment": "HMP Example", "display_name": "Laptop 9"}
    enrolled = clinic.console.post("/admin/api/devices", json=body)
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["status"] == "active" and enrolled.json()["last_check"] is None
    twice = clinic.console.post("/admin/api/devices", json=body)
    assert twice.status_code == 409 and problem(twice)["code"] == "already_exists"
    bad_key = clinic.console.post("/admin/api/devices", json={**body, "id": "laptop-x", "public_key": "AAAA"})
    assert bad_key.status_code == 400 and problem(bad_key)["code"] == "invalid_key"

    revoked = clinic.console.post(
        "/admin/api/devices/laptop-hmp-example-09/revoke", json={"reason": "Lost on the wing"}
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    again = clinic.console.post("/admin/api/devices/laptop-hmp-example-09/revoke", json={"reason": "again"})
    assert again.status_code == 409 and problem(again)["code"] == "invalid_state"
    with Session(services.engine) as session:
        actions = [(e.action, e.device_id) for e in iter_entries(session=session) if "device." in e.action]
    assert ("admin.device.enrol", "laptop-hmp-example-09") in actions
    assert ("device.enrol", "laptop-hmp-example-09") in actions
    assert ("admin.device.revoke", "laptop-hmp-example-09") in actions


def test_users_create_disable_enable_and_never_oneself(clinic: Clinic, client: TestClient) -> None:
    created = clinic.console.post(
        "/admin/api/users",
        json={
            "username": "nurse.new",
            "display_name": "Nia New",
            "role": "clinician",
            "establishment": "HMP Example",
        },
    )
    assert created.status_code == 201, created.text
    password = created.json()["password"]
    user = created.json()["user"]
    assert user["role"] == "clinician" and user["disabled"] is False and user["second_factor"] is False
    login(client, "nurse.new", password)  # the one-time password works

    taken = clinic.console.post(
        "/admin/api/users", json={"username": "nurse.new", "display_name": "Again", "role": "clinician"}
    )
    assert taken.status_code == 409 and problem(taken)["code"] == "already_exists"

    disabled = clinic.console.post(f"/admin/api/users/{user['id']}/disable")
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    refused = client.post("/api/v1/auth/login", json={"username": "nurse.new", "password": password})
    assert refused.status_code == 401
    enabled = clinic.console.post(f"/admin/api/users/{user['id']}/enable")
    assert enabled.json()["disabled"] is False
    login(client, "nurse.new", password)

    me = clinic.console.get("/admin/api/session").json()["user"]["id"]
    own = clinic.console.post(f"/admin/api/users/{me}/disable")
    assert own.status_code == 409 and problem(own)["code"] == "own_account"
    listed = {u["username"]: u for u in clinic.console.get("/admin/api/users").json()}
    assert listed["root"]["second_factor"] is True and listed["root"]["disabled"] is False
    assert listed["doctor"]["role"] == "clinician"
    assert clinic.console.post("/admin/api/users/nobody/disable").status_code == 404


def book(clinic: Clinic, start: datetime) -> str:
    """A consultation for patient B with the room, starting at ``start``."""
    ward = clinic.ward
    body = {
        "patient_id": ward.patient_b,
        "host_user_id": ward.nurse_id,
        "room_device_id": ward.room.id,
        "scheduled_start": start.isoformat(),
        "scheduled_end": (start + timedelta(minutes=30)).isoformat(),
    }
    made = ward.client.post("/api/v1/consultations", json=body, headers=ward.admin)
    assert made.status_code == 201, made.text
    cid: str = made.json()["id"]
    return cid


def test_the_days_consultations_cancel_and_no_show(clinic: Clinic, services: Services) -> None:
    later = book(clinic, utcnow() + timedelta(hours=2, minutes=30))
    day = datetime.now(UTC).date().isoformat()
    if (utcnow() + timedelta(hours=2, minutes=30)).date() != utcnow().date():
        day = (utcnow() + timedelta(hours=2, minutes=30)).date().isoformat()
    listed = {c["id"]: c for c in clinic.console.get("/admin/api/consultations", params={"day": day}).json()}
    item = listed[later]
    assert item["host_name"] == "Nurse Other" and item["prison_number"] == "B5678DE"
    assert item["room_name"] == "room-01" and item["state"] == "scheduled"
    assert item["can_cancel"] is True and item["can_mark_no_show"] is False

    early = clinic.console.post(f"/admin/api/consultations/{later}/no-show")
    assert early.status_code == 409 and problem(early)["code"] == "not_yet_due"
    cancelled = clinic.console.post(
        f"/admin/api/consultations/{later}/cancel", json={"reason": "Patient moved"}
    )
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["can_cancel"] is False
    again = clinic.console.post(f"/admin/api/consultations/{later}/cancel", json={"reason": "again"})
    assert again.status_code == 409 and problem(again)["code"] == "invalid_state"

    # One whose start has passed can be marked a no-show.
    missed = book(clinic, utcnow() + timedelta(hours=3))
    with session_scope(services.engine) as session:
        row = session.get(Consultation, missed)
        assert row is not None
        row.scheduled_start = utcnow() - timedelta(minutes=10)
        session.add(row)
    marked = clinic.console.post(f"/admin/api/consultations/{missed}/no-show")
    assert marked.status_code == 200, marked.text
    assert marked.json()["state"] == "no_show"
    live = clinic.console.get("/admin/api/consultations").json()
    assert any(
        c["id"] == clinic.ward.consultation and c["state"] == "live" and not c["can_cancel"] for c in live
    )
