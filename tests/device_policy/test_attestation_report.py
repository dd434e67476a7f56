"""Signed posture reports: the round trip, and each way a report is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from device_policy.attestation import (
    ATTESTATION_CONTEXT,
    AttestationReport,
    SignedReport,
    generate_device_key,
    generate_nonce,
    report_signing_input,
    sign_report,
    verify_report,
)
from device_policy.canonical import canonical_json
from device_policy.errors import AttestationRefused, SimulatedSourceRefused
from device_policy.keys import b64url_decode, b64url_encode
from device_policy.policy import (
    DeviceKind,
    EnrolledIdentity,
    evaluate,
    load_default_policy,
    policy_hash,
)
from device_policy.simulated import refuse_simulated, simulated_facts

NOW = datetime(2026, 11, 28, 9, 30, 0, tzinfo=UTC)
LAPTOP = EnrolledIdentity(
    device_id="lap-0007",
    device_kind=DeviceKind.PRISON_LAPTOP,
    iccid="8944110000000000017",
    imsi="234150000000017",
    imei="356938035643817",
)
DEVICE_KEY = generate_device_key()
NONCE = generate_nonce()
POLICY_HASH = policy_hash(load_default_policy())


def make_report(**changes: Any) -> AttestationReport:
    values: dict[str, Any] = {
        "device_id": LAPTOP.device_id,
        "nonce": NONCE,
        "collected_at": NOW - timedelta(seconds=3),
        "agent_version": "telemed-agent/0.1.0",
        "policy_hash": POLICY_HASH,
        "platform": "linux",
        "device_kind": "prison_laptop",
        "facts": simulated_facts("compliant", enrolled=LAPTOP),
    }
    values.update(changes)
    return AttestationReport.model_validate(values)


def verify(signed: Any, **changes: Any) -> AttestationReport:
    arguments: dict[str, Any] = {
        "public_key": DEVICE_KEY.public_key(),
        "expected_nonce": NONCE,
        "expected_device_id": LAPTOP.device_id,
        "expected_policy_hash": POLICY_HASH,
        "now": NOW,
        "max_skew": timedelta(minutes=2),
    }
    arguments.update(changes)
    return verify_report(signed, **arguments)


def refusal(signed: Any, **changes: Any) -> AttestationRefused:
    with pytest.raises(AttestationRefused) as caught:
        verify(signed, **changes)
    return caught.value


def wire(signed: SignedReport) -> dict[str, Any]:
    """The signed report as the server receives it: parsed JSON."""
    parsed: dict[str, Any] = json.loads(signed.model_dump_json())
    return parsed


# --- round trip ----------------------------------------------------------------------------


def test_a_signed_report_verifies_from_the_wire() -> None:
    report = make_report()
    signed = sign_report(report, DEVICE_KEY)

    assert verify(signed.model_dump_json()) == report
    assert verify(signed.model_dump_json().encode()) == report
    assert verify(wire(signed)) == report
    assert verify(signed) == report


def test_the_verified_report_evaluates_against_the_policy() -> None:
    signed = wire(sign_report(make_report(), DEVICE_KEY))

    report = verify(signed)
    result = evaluate(load_default_policy(), report.facts, platform=report.platform, enrolled=LAPTOP)

    assert result.compliant is True
    assert result.policy_hash == report.policy_hash


def test_wire_format_is_rfc3339_utc_and_base64url() -> None:
    report = make_report(collected_at=datetime(2026, 11, 28, 10, 29, 57, tzinfo=UTC))

    body = wire(sign_report(report, DEVICE_KEY))

    assert body["report"]["collected_at"] == "2026-11-28T10:29:57Z"
    assert len(b64url_decode(body["signature"])) == 64
    assert set(body["report"]) == {
        "device_id",
        "nonce",
        "collected_at",
        "agent_version",
        "policy_hash",
        "platform",
        "device_kind",
        "facts",
    }


def test_collected_at_in_another_offset_is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    report = make_report(collected_at=datetime(2026, 11, 28, 10, 29, 57, 250000, tzinfo=paris))

    assert report.model_dump(mode="json")["collected_at"] == "2026-11-28T09:29:57.250000Z"


def test_the_signature_covers_context_and_canonical_json() -> None:
    report = make_report()
    signed = sign_report(report, DEVICE_KEY)
    signing_input = ATTESTATION_CONTEXT + canonical_json(report.model_dump(mode="json"))

    assert report_signing_input(report) == signing_input
    DEVICE_KEY.public_key().verify(b64url_decode(signed.signature), signing_input)


# --- refusals --------------------------------------------------------------------------------


def test_a_tampered_fact_is_a_bad_signature() -> None:
    body = wire(sign_report(make_report(facts=simulated_facts("sim-pin-off", enrolled=LAPTOP)), DEVICE_KEY))
    body["report"]["facts"]["modem.enabled_locks"]["value"] = ["sim"]

    error = refusal(body)

    assert (error.code, error.status) == ("bad_signature", 401)
    assert str(error) == 'The signature does not verify with the key enrolled for "lap-0007"'


def test_a_removed_fact_is_a_bad_signature() -> None:
    body = wire(sign_report(make_report(), DEVICE_KEY))
    del body["report"]["facts"]["usb.mass_storage_blocked"]

    assert refusal(body).code == "bad_signature"


def test_a_report_signed_by_another_key_is_a_bad_signature() -> None:
    foreign = generate_device_key()

    error = refusal(sign_report(make_report(), foreign))

    assert error.code == "bad_signature"


@pytest.mark.parametrize(
    "signature", ["!!!!", "AAAA", b64url_encode(b"\0" * 64) + "=", b64url_encode(b"\0" * 63)]
)
def test_a_signature_that_is_not_one_is_a_bad_signature(signature: str) -> None:
    body = wire(sign_report(make_report(), DEVICE_KEY))
    body["signature"] = signature

    assert refusal(body).code == "bad_signature"


def test_an_undecodable_signature_is_a_bad_signature() -> None:
    body = wire(sign_report(make_report(), DEVICE_KEY))
    body["signature"] = "not*base64"

    error = refusal(body)

    assert error.code == "bad_signature"
    assert str(error) == "The signature is not unpadded base64url"


def test_a_report_answering_another_challenge_is_a_nonce_mismatch() -> None:
    signed = sign_report(make_report(nonce=generate_nonce()), DEVICE_KEY)

    error = refusal(signed)

    assert (error.code, error.status) == ("nonce_mismatch", 401)
    assert NONCE not in str(error)


def test_a_report_naming_another_device_is_a_device_mismatch() -> None:
    # Signed with lap-0007's own key but claiming to be lap-0008.
    signed = sign_report(make_report(device_id="lap-0008"), DEVICE_KEY)

    error = refusal(signed)

    assert error.code == "device_mismatch"
    assert str(error) == ('The report names device "lap-0008", the challenge was issued to "lap-0007"')


def test_a_report_for_another_policy_is_a_policy_mismatch() -> None:
    signed = sign_report(make_report(policy_hash="0" * 64), DEVICE_KEY)

    error = refusal(signed)

    assert (error.code, error.status) == ("policy_mismatch", 409)
    assert error.extra == {"expected_policy_hash": POLICY_HASH}


@pytest.mark.parametrize(
    ("offset", "words"),
    [(timedelta(minutes=5), "300 s ahead of"), (timedelta(minutes=-5), "300 s behind")],
)
def test_a_report_too_far_from_the_server_clock_is_clock_skew(offset: timedelta, words: str) -> None:
    signed = sign_report(make_report(collected_at=NOW + offset), DEVICE_KEY)

    error = refusal(signed)

    assert error.code == "clock_skew"
    assert str(error) == (f"The report time is {words} the server clock; at most 120 s is allowed")


@pytest.mark.parametrize("offset", [timedelta(minutes=2), timedelta(minutes=-2)])
def test_skew_up_to_the_limit_is_accepted(offset: timedelta) -> None:
    report = make_report(collected_at=NOW + offset)

    assert verify(sign_report(report, DEVICE_KEY)) == report


def test_signature_is_checked_before_anything_the_report_claims() -> None:
    signed = sign_report(make_report(nonce=generate_nonce(), policy_hash="1" * 64), generate_device_key())

    assert refusal(signed).code == "bad_signature"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["report"].pop("nonce"), "report.nonce"),
        (lambda b: b["report"].update(extra="x"), "report.extra"),
        (lambda b: b.update(extra="x"), "extra"),
        (lambda b: b["report"].update(collected_at="2026-11-28T09:29:57"), "report.collected_at"),
        (lambda b: b["report"].update(platform="macos"), "report.platform"),
        (lambda b: b["report"].update(device_kind="toaster"), "report.device_kind"),
        (lambda b: b["report"].update(policy_hash="ABC"), "report.policy_hash"),
        (lambda b: b["report"].update(nonce="short"), "report.nonce"),
        (
            lambda b: b["report"]["facts"]["boot.secure_boot"].update(status="maybe"),
            "report.facts.boot.secure_boot.status",
        ),
        (lambda b: b.pop("signature"), "signature"),
    ],
)
def test_a_malformed_report_names_the_bad_field(mutate: Any, field: str) -> None:
    body = wire(sign_report(make_report(), DEVICE_KEY))
    mutate(body)

    error = refusal(body)

    assert (error.code, error.status) == ("malformed_report", 400)
    assert field in error.extra["fields"]


def test_a_fact_filed_under_another_key_is_malformed() -> None:
    body = wire(sign_report(make_report(), DEVICE_KEY))
    body["report"]["facts"]["disk.root_encrypted"] = body["report"]["facts"]["disk.swap_encrypted"]

    assert refusal(body).code == "malformed_report"


@pytest.mark.parametrize("text", ["", "[]", "{", '{"report": 1, "signature": "x"}'])
def test_bodies_that_are_not_reports_are_malformed(text: str) -> None:
    assert refusal(text).code == "malformed_report"


def test_a_naive_server_clock_is_a_programming_error() -> None:
    signed = sign_report(make_report(), DEVICE_KEY)

    with pytest.raises(ValueError, match="timezone-aware"):
        verify(signed, now=NOW.replace(tzinfo=None))


def test_a_verified_report_of_simulated_facts_is_still_refused_outside_development() -> None:
    report = verify(sign_report(make_report(), DEVICE_KEY))

    with pytest.raises(SimulatedSourceRefused):
        refuse_simulated(report.facts, allow_simulated=False)


def test_a_report_claiming_another_device_kind_is_a_device_mismatch() -> None:
    signed = sign_report(make_report(device_kind="room_endpoint"), DEVICE_KEY)

    error = refusal(signed, expected_device_kind=DeviceKind.PRISON_LAPTOP)

    assert error.code == "device_mismatch"
    assert str(error) == (
        'The report says device kind "room_endpoint", "lap-0007" is enrolled as "prison_laptop"'
    )


def test_device_kind_is_checked_only_when_the_server_asks() -> None:
    report = make_report(device_kind="room_endpoint")

    assert verify(sign_report(report, DEVICE_KEY)) == report


def test_malformed_report_errors_do_not_echo_long_device_input() -> None:
    body = wire(sign_report(make_report(), DEVICE_KEY))
    body["report"]["facts"]["x" * 5000] = {"name": "x", "status": "bogus"}

    error = refusal(body)

    assert error.code == "malformed_report"
    assert len(str(error)) < 400
    assert "x" * 200 not in str(error)
