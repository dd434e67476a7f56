"""Signed reports as other clients write them: the signature covers the report as sent."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from device_policy.attestation import (
    ATTESTATION_CONTEXT,
    AttestationReport,
    generate_device_key,
    generate_nonce,
    sign_report,
    verify_report,
)
from device_policy.errors import AttestationRefused
from device_policy.policy import DeviceKind, EnrolledIdentity, load_default_policy, policy_hash
from device_policy.simulated import simulated_facts
from tests.support.services import service_missing

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
NODE_NOW_MS = int((NOW - timedelta(seconds=3)).timestamp() * 1000)
JS_CLIENT = Path(__file__).parent / "fixtures" / "js_client" / "sign_report.mjs"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sparse_facts() -> dict[str, dict[str, Any]]:
    """The compliant facts as a JavaScript client sends them: no null detail or source."""
    facts: dict[str, dict[str, Any]] = {}
    for name, fact in simulated_facts("compliant", enrolled=LAPTOP).items():
        facts[name] = {"name": name, "status": fact.status.value, "value": fact.value}
        if name == "boot.secure_boot":
            facts[name]["source"] = fact.source  # one fact with a source, none with a detail
    return facts


def js_report(collected_at: str = "2026-11-28T09:29:57.000Z") -> dict[str, Any]:
    """A report in a JavaScript client's key order, with ``Date.toISOString()`` time."""
    return {
        "nonce": NONCE,
        "device_id": LAPTOP.device_id,
        "facts": sparse_facts(),
        "collected_at": collected_at,
        "platform": "linux",
        "device_kind": "prison_laptop",
        "agent_version": "telemed-web-agent/2.0",
        "policy_hash": POLICY_HASH,
    }


def jcs_sign(report: dict[str, Any], key: Ed25519PrivateKey = DEVICE_KEY) -> str:
    """Sign as docs/policy.md §7 says, canonicalising with the standard library, not ours."""
    canonical = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b64url(key.sign(ATTESTATION_CONTEXT + canonical.encode("utf-8")))


def as_sent(report: dict[str, Any], signature: str) -> bytes:
    """The body with the signature first and two-space indents, as JSON.stringify(b, null, 2)."""
    return json.dumps({"signature": signature, "report": report}, indent=2).encode()


def verify(body: Any) -> AttestationReport:
    return verify_report(
        body,
        public_key=DEVICE_KEY.public_key(),
        expected_nonce=NONCE,
        expected_device_id=LAPTOP.device_id,
        expected_policy_hash=POLICY_HASH,
        now=NOW,
    )


def refusal(body: Any) -> AttestationRefused:
    with pytest.raises(AttestationRefused) as caught:
        verify(body)
    return caught.value


@pytest.mark.parametrize(
    "collected_at",
    ["2026-11-28T09:29:57.000Z", "2026-11-28T09:29:57+00:00", "2026-11-28T10:29:57+01:00"],
)
def test_a_report_signed_as_sent_verifies_whatever_its_spelling(collected_at: str) -> None:
    report = js_report(collected_at)

    trusted = verify(as_sent(report, jcs_sign(report)))

    assert trusted.collected_at == datetime(2026, 11, 28, 9, 29, 57, tzinfo=UTC)
    assert trusted.facts["disk.root_encrypted"].detail is None
    assert trusted.facts["boot.secure_boot"].source == "simulated"
    assert trusted.agent_version == "telemed-web-agent/2.0"


def test_the_parsed_dict_verifies_as_well_as_the_bytes() -> None:
    report = js_report()

    assert verify({"report": report, "signature": jcs_sign(report)}).device_id == "lap-0007"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: r.update(collected_at="2026-11-28T09:29:57Z"), id="same-time-other-spelling"),
        pytest.param(lambda r: r.update(collected_at="2026-11-28T09:29:57.001Z"), id="one-millisecond"),
        pytest.param(lambda r: r["facts"]["disk.root_encrypted"].update(detail=None), id="null-detail-added"),
        pytest.param(lambda r: r["facts"]["boot.secure_boot"].pop("source"), id="source-removed"),
        pytest.param(lambda r: r["facts"]["modem.enabled_locks"].update(value=[]), id="fact-value"),
        pytest.param(lambda r: r.update(agent_version="telemed-web-agent/2.1"), id="agent-version"),
    ],
)
def test_any_change_to_what_was_signed_is_a_bad_signature(change: Any) -> None:
    report = js_report()
    signature = jcs_sign(report)
    change(report)

    error = refusal(as_sent(report, signature))

    assert (error.code, error.status) == ("bad_signature", 401)


def test_a_duplicated_key_is_malformed_not_guessed() -> None:
    report = js_report()
    body = as_sent(report, jcs_sign(report)).replace(
        b'"platform": "linux"', b'"platform": "linux", "platform": "windows"'
    )

    error = refusal(body)

    assert (error.code, error.status) == ("malformed_report", 400)
    assert error.extra["fields"] == ["body"]


@pytest.mark.parametrize("body", [b"\xff\xfe", b'{"report": NaN}', b"[" * 100_000])
def test_bytes_that_are_not_json_are_malformed(body: bytes) -> None:
    assert refusal(body).code == "malformed_report"


def test_a_python_agent_report_still_verifies_in_any_json_layout() -> None:
    signed = sign_report(
        AttestationReport.model_validate(
            js_report() | {"facts": simulated_facts("compliant", enrolled=LAPTOP)}
        ),
        DEVICE_KEY,
    )
    relaid = json.dumps(json.loads(signed.model_dump_json()), indent=4, sort_keys=True)

    assert verify(signed.model_dump_json()).device_id == "lap-0007"
    assert verify(relaid).device_id == "lap-0007"


def node_signed() -> str:
    """The body printed by the JavaScript client in fixtures/js_client (Node's Ed25519)."""
    node = shutil.which("node")
    if node is None:
        service_missing("node (JavaScript client)")
        raise AssertionError("unreachable")
    pem = DEVICE_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    request = {"pem": pem, "report": js_report() | {"collected_at": None}, "now_ms": NODE_NOW_MS}
    done = subprocess.run(  # noqa: S603 - fixed script, our own input
        [node, str(JS_CLIENT)], input=json.dumps(request), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_report_signed_by_node_js_webcrypto_verifies() -> None:
    """A real JavaScript client: Node's Ed25519 and the canonicalisation in docs/policy.md."""
    body = node_signed()

    assert '"collected_at": "2026-11-28T09:29:57.000Z"' in body  # Date.toISOString()
    assert verify(body.encode()).collected_at == datetime(2026, 11, 28, 9, 29, 57, tzinfo=UTC)


def test_the_node_client_signature_breaks_on_a_changed_byte() -> None:
    body = node_signed()

    tampered = body.replace('"telemed-web-agent/2.0"', '"telemed-web-agent/2.1"')

    assert tampered != body
    assert refusal(tampered).code == "bad_signature"
