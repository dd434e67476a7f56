"""Challenge–response attestation: every refusal code, with real signed reports — on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from device_policy.keys import b64url_decode, generate_device_key
from server.db import utcnow
from server.devices.models import DeviceChallenge
from server.services import Services
from server.settings import Environment
from tests.server.devices.helpers import (
    admin_headers,
    app_client,
    attest,
    challenge,
    collected_facts,
    enrol,
    signed_report,
    simulated,
)

PROBLEM = "application/problem+json"


def _refused(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body: dict[str, Any] = resp.json()
    assert body["code"] == code
    return body


def _checks(client: TestClient, admin: dict[str, str], **query: str) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/device-checks", params=query, headers=admin)
    assert resp.status_code == 200
    checks: list[dict[str, Any]] = resp.json()
    return checks


def test_challenge_is_a_fresh_128_bit_nonce_for_the_current_policy(
    client: TestClient, services: Services
) -> None:
    admin = admin_headers(client, services)
    enrol(client, admin, "laptop-01")
    first, second = challenge(client, "laptop-01"), challenge(client, "laptop-01")
    assert first["nonce"] != second["nonce"]
    assert len(b64url_decode(first["nonce"])) >= 16
    assert first["device_kind"] == "prison_laptop"
    expires_in = (datetime.fromisoformat(first["expires_at"]) - utcnow()).total_seconds()
    assert 0 < expires_in <= 120
    policy = client.get("/api/v1/device-policy").json()
    assert first["policy_hash"] == policy["hash"] and first["policy_version"] == policy["version"]
    assert any(rule["id"] == "sim-pin-lock" for rule in policy["rules"])


def test_compliant_device_gets_a_short_key_bound_token(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    resp = attest(client, "laptop-01", key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["compliant"] is True and body["device_id"] == "laptop-01"
    assert 0 < body["expires_in"] <= 600
    assert body["report"]["compliant"] is True
    assert {r["outcome"] for r in body["report"]["results"]} == {"pass"}
    claims = services.jwt.verify(body["posture_token"], audience="telemed-posture")
    assert claims["sub"] == "laptop-01" and claims["jti"] == body["token_jti"]
    assert claims["exp"] - claims["iat"] <= 600
    assert (
        claims["cnf"]["jkt"]
        == client.get("/api/v1/devices/laptop-01", headers=admin).json()["key_thumbprint"]
    )
    assert claims["policy_hash"] == body["policy_hash"]
    [check] = _checks(client, admin)
    assert check["outcome"] == "pass" and check["token_jti"] == body["token_jti"]
    assert check["policy_version"] == body["policy_version"]


def test_unknown_device_is_refused(client: TestClient, services: Services) -> None:
    _refused(client.post("/api/v1/devices/ghost-01/challenge"), 401, "unknown_device")
    key = generate_device_key()
    report = signed_report(
        key,
        device_id="ghost-01",
        nonce="n" * 43,
        policy_hash="0" * 64,
        facts=collected_facts(device_id="ghost-01"),
    )
    _refused(client.post("/api/v1/devices/ghost-01/attest", json=report), 401, "unknown_device")


def test_report_signed_by_a_foreign_key_is_refused_and_leaves_the_nonce_usable(
    client: TestClient, services: Services
) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    issued = challenge(client, "laptop-01")
    facts = collected_facts(device_id="laptop-01")

    def report(signing_key: Any) -> dict[str, Any]:
        return signed_report(
            signing_key,
            device_id="laptop-01",
            nonce=issued["nonce"],
            policy_hash=issued["policy_hash"],
            facts=facts,
        )

    foreign = client.post("/api/v1/devices/laptop-01/attest", json=report(generate_device_key()))
    body = _refused(foreign, 401, "bad_signature")
    assert "laptop-01" in body["detail"]
    # Nobody without the device key can spend its challenge.
    assert client.post("/api/v1/devices/laptop-01/attest", json=report(key)).status_code == 200


def test_tampered_report_fails_the_signature(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    issued = challenge(client, "laptop-01")
    report = signed_report(
        key,
        device_id="laptop-01",
        nonce=issued["nonce"],
        policy_hash=issued["policy_hash"],
        facts=collected_facts("sim-pin-off", device_id="laptop-01"),
    )
    report["report"]["facts"]["modem.enabled_locks"]["value"] = ["sim"]
    _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 401, "bad_signature")


def test_replayed_report_is_refused(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    issued = challenge(client, "laptop-01")
    report = signed_report(
        key,
        device_id="laptop-01",
        nonce=issued["nonce"],
        policy_hash=issued["policy_hash"],
        facts=collected_facts(device_id="laptop-01"),
    )
    assert client.post("/api/v1/devices/laptop-01/attest", json=report).status_code == 200
    _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 401, "nonce_reused")


def test_expired_nonce_is_refused(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    issued = challenge(client, "laptop-01")
    with Session(services.engine) as session:
        row = session.get(DeviceChallenge, issued["nonce"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    report = signed_report(
        key,
        device_id="laptop-01",
        nonce=issued["nonce"],
        policy_hash=issued["policy_hash"],
        facts=collected_facts(device_id="laptop-01"),
    )
    _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 401, "nonce_expired")


def test_nonce_must_be_issued_and_issued_to_this_device(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    enrol(client, admin, "laptop-02")
    policy_hash = challenge(client, "laptop-01")["policy_hash"]
    facts = collected_facts(device_id="laptop-01")
    made_up = signed_report(key, device_id="laptop-01", nonce="x" * 43, policy_hash=policy_hash, facts=facts)
    _refused(client.post("/api/v1/devices/laptop-01/attest", json=made_up), 401, "nonce_unknown")
    theirs = challenge(client, "laptop-02")["nonce"]
    borrowed = signed_report(key, device_id="laptop-01", nonce=theirs, policy_hash=policy_hash, facts=facts)
    _refused(client.post("/api/v1/devices/laptop-01/attest", json=borrowed), 401, "nonce_mismatch")


def test_report_for_another_device_is_refused(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    enrol(client, admin, "laptop-02")
    issued = challenge(client, "laptop-01")
    report = signed_report(
        key,
        device_id="laptop-02",
        nonce=issued["nonce"],
        policy_hash=issued["policy_hash"],
        facts=collected_facts(device_id="laptop-02"),
    )
    _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 401, "device_mismatch")
    # A laptop cannot pass itself off as a room endpoint to skip the SIM rules.
    as_room = signed_report(
        key,
        device_id="laptop-01",
        nonce=challenge(client, "laptop-01")["nonce"],
        policy_hash=issued["policy_hash"],
        facts=collected_facts("sim-pin-off", device_id="laptop-01"),
        kind="room_endpoint",
    )
    body = _refused(client.post("/api/v1/devices/laptop-01/attest", json=as_room), 401, "device_mismatch")
    assert "prison_laptop" in body["detail"]


def test_device_clock_far_off_is_refused(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    issued = challenge(client, "laptop-01")
    report = signed_report(
        key,
        device_id="laptop-01",
        nonce=issued["nonce"],
        policy_hash=issued["policy_hash"],
        facts=collected_facts(device_id="laptop-01"),
        collected_at=utcnow() - timedelta(minutes=10),
    )
    body = _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 401, "clock_skew")
    assert "behind the server clock" in body["detail"]
    ahead = challenge(client, "laptop-01")
    report = signed_report(
        key,
        device_id="laptop-01",
        nonce=ahead["nonce"],
        policy_hash=ahead["policy_hash"],
        facts=collected_facts(device_id="laptop-01"),
        collected_at=utcnow() + timedelta(minutes=10),
    )
    body = _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 401, "clock_skew")
    assert "ahead of the server clock" in body["detail"]
    assert [c["code"] for c in _checks(client, admin)] == ["clock_skew", "clock_skew"]


def test_report_for_another_policy_is_refused(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    issued = challenge(client, "laptop-01")
    report = signed_report(
        key,
        device_id="laptop-01",
        nonce=issued["nonce"],
        policy_hash="0" * 64,
        facts=collected_facts(device_id="laptop-01"),
    )
    body = _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 409, "policy_mismatch")
    assert body["expected_policy_hash"] == issued["policy_hash"]


def test_malformed_report_names_the_bad_fields(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    enrol(client, admin, "laptop-01")
    body = _refused(
        client.post(
            "/api/v1/devices/laptop-01/attest", json={"report": {"device_id": "laptop-01"}, "signature": "x"}
        ),
        400,
        "malformed_report",
    )
    assert "report.nonce" in body["fields"]
    _refused(client.post("/api/v1/devices/laptop-01/attest", content=b"not json"), 400, "malformed_report")
    huge = _refused(
        client.post("/api/v1/devices/laptop-01/attest", content=b"x" * 300_000), 400, "malformed_report"
    )
    assert "larger than" in huge["detail"]
    assert {c["code"] for c in _checks(client, admin)} == {"malformed_report"}


def test_sim_pin_off_fails_with_the_rule_its_actual_value_and_the_fix(
    client: TestClient, services: Services
) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    resp = attest(client, "laptop-01", key, facts=collected_facts("sim-pin-off", device_id="laptop-01"))
    body = _refused(resp, 403, "policy_failed")
    assert "posture_token" not in body
    assert body["failed_rules"] == [
        {
            "id": "sim-pin-lock",
            "title": "SIM PIN lock is on",
            "severity": "block",
            "outcome": "fail",
            "actual": [],
            "remediation": "Turn on the SIM PIN lock (currently enabled locks: none).",
        }
    ]
    assert body["report"]["compliant"] is False
    [check] = _checks(client, admin, outcome="fail")
    assert check["device_id"] == "laptop-01" and check["failed_rules"] == ["sim-pin-lock"]
    assert check["code"] == "policy_failed" and check["policy_version"] == body["policy_version"]


def test_unknown_facts_never_pass(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    facts = collected_facts(device_id="laptop-01")
    del facts["disk.root_encrypted"]
    body = _refused(attest(client, "laptop-01", key, facts=facts), 403, "policy_failed")
    [failed] = body["failed_rules"]
    assert failed["id"] == "disk-root-encrypted" and failed["outcome"] == "unknown"
    assert "encrypted: unknown" in failed["remediation"]


def test_revoked_device_is_refused_at_challenge_and_attest(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    issued = challenge(client, "laptop-01")
    assert client.post("/api/v1/devices/laptop-01/revoke", headers=admin).status_code == 200
    _refused(client.post("/api/v1/devices/laptop-01/challenge"), 403, "device_revoked")
    report = signed_report(
        key,
        device_id="laptop-01",
        nonce=issued["nonce"],
        policy_hash=issued["policy_hash"],
        facts=collected_facts(device_id="laptop-01"),
    )
    _refused(client.post("/api/v1/devices/laptop-01/attest", json=report), 403, "device_revoked")


def test_every_attempt_is_kept_for_admins(client: TestClient, services: Services) -> None:
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    assert attest(client, "laptop-01", key).status_code == 200
    attest(client, "laptop-01", generate_device_key())
    attest(client, "laptop-01", key, facts=collected_facts("firewall-off", device_id="laptop-01"))
    checks = _checks(client, admin, device_id="laptop-01")
    assert sorted((c["outcome"], c["code"]) for c in checks) == [
        ("fail", "policy_failed"),
        ("pass", None),
        ("refused", "bad_signature"),
    ]
    failed = _checks(client, admin, outcome="fail")
    assert failed[0]["failed_rules"] == ["firewall-active", "firewall-inbound-deny"]


@pytest.mark.parametrize("environment", [Environment.TEST, Environment.PRODUCTION])
def test_simulated_facts_are_refused_outside_development(
    db_url: str, tmp_path: Path, environment: Environment
) -> None:
    with app_client(db_url, tmp_path, environment) as (client, services):
        admin = admin_headers(client, services)
        key = enrol(client, admin, "laptop-01")
        resp = attest(client, "laptop-01", key, facts=simulated("compliant", device_id="laptop-01"))
        body = _refused(resp, 403, "simulated_source_refused")
        assert "not in development mode" in body["detail"]
        [check] = _checks(client, admin)
        assert check["outcome"] == "refused" and check["code"] == "simulated_source_refused"


def test_simulated_facts_are_accepted_in_development(db_url: str, tmp_path: Path) -> None:
    with app_client(db_url, tmp_path, Environment.DEVELOPMENT) as (client, services):
        admin = admin_headers(client, services)
        key = enrol(client, admin, "laptop-01")
        ok = attest(client, "laptop-01", key, facts=simulated("compliant", device_id="laptop-01"))
        assert ok.status_code == 200 and ok.json()["compliant"] is True
        failed = attest(client, "laptop-01", key, facts=simulated("sim-pin-off", device_id="laptop-01"))
        assert _refused(failed, 403, "policy_failed")["failed_rules"][0]["id"] == "sim-pin-lock"
