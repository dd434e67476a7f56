"""Enrol devices, answer challenges and sign proofs the way a real device agent does."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from device_policy.attestation import AttestationReport, sign_report
from device_policy.facts import FactSet
from device_policy.keys import generate_device_key, public_key_b64
from device_policy.policy import DeviceKind, EnrolledIdentity, Platform
from device_policy.proof import sign_request_proof
from device_policy.simulated import simulated_facts
from server.app import create_app
from server.db import utcnow
from server.identity.models import Role
from server.services import Services
from server.settings import Environment
from tests.conftest import make_settings
from tests.server.factories import add_user, bearer, login

# The identifiers the simulator reports when enrolment has none; enrolling these makes the
# simulated "compliant" profile match the enrolment.
MODEM_IDS = {"imei": "356938035643809", "iccid": "8944000000000000001", "imsi": "234150000000001"}


def admin_headers(client: TestClient, services: Services, username: str = "root") -> dict[str, str]:
    """Create an admin and return its bearer header."""
    add_user(services, username, role=Role.ADMIN)
    return bearer(login(client, username)["access_token"])


def enrol_body(
    device_id: str, key: Ed25519PrivateKey, kind: str = "prison_laptop", **over: Any
) -> dict[str, Any]:
    """The enrolment request an admin sends for this device and key."""
    body: dict[str, Any] = {
        "id": device_id,
        "kind": kind,
        "serial": f"SN-{device_id}",
        "model": "Latitude 7440 Rugged",
        "type_approval": "TA-2026-0042",
        "establishment": "HMP Example",
        "public_key": public_key_b64(key.public_key()),
        **(MODEM_IDS if kind == "prison_laptop" else {}),
    }
    body.update(over)
    return body


def enrol(
    client: TestClient, headers: dict[str, str], device_id: str, kind: str = "prison_laptop", **over: Any
) -> Ed25519PrivateKey:
    """Enrol a new device with a fresh key; returns the key."""
    key = generate_device_key()
    resp = client.post("/api/v1/devices", json=enrol_body(device_id, key, kind, **over), headers=headers)
    assert resp.status_code == 201, resp.text
    return key


def collected_facts(
    profile: str = "compliant", *, device_id: str, kind: str = "prison_laptop", source: str = "mmcli"
) -> FactSet:
    """Facts as a real collector would report them (not marked simulated)."""
    enrolled = EnrolledIdentity(device_id=device_id, device_kind=DeviceKind(kind), **MODEM_IDS)
    facts = simulated_facts(profile, enrolled=enrolled, platform=Platform.LINUX)
    return {name: fact.model_copy(update={"source": source, "detail": None}) for name, fact in facts.items()}


def simulated(profile: str, *, device_id: str, kind: str = "prison_laptop") -> FactSet:
    """Facts straight from the simulator (marked ``source="simulated"``)."""
    enrolled = EnrolledIdentity(device_id=device_id, device_kind=DeviceKind(kind), **MODEM_IDS)
    return simulated_facts(profile, enrolled=enrolled, platform=Platform.LINUX)


def challenge(client: TestClient, device_id: str) -> dict[str, Any]:
    resp = client.post(f"/api/v1/devices/{device_id}/challenge")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def signed_report(
    key: Ed25519PrivateKey,
    *,
    device_id: str,
    nonce: str,
    policy_hash: str,
    facts: FactSet,
    kind: str = "prison_laptop",
    collected_at: datetime | None = None,
) -> dict[str, Any]:
    """A report signed with ``key``, as JSON for the wire."""
    report = AttestationReport(
        device_id=device_id,
        nonce=nonce,
        collected_at=collected_at or utcnow(),
        agent_version="test-agent/1",
        policy_hash=policy_hash,
        platform=Platform.LINUX,
        device_kind=DeviceKind(kind),
        facts=facts,
    )
    dumped: dict[str, Any] = sign_report(report, key).model_dump(mode="json")
    return dumped


def attest(
    client: TestClient,
    device_id: str,
    key: Ed25519PrivateKey,
    *,
    facts: FactSet | None = None,
    kind: str = "prison_laptop",
) -> Any:
    """Run challenge → sign → attest; returns the HTTP response."""
    issued = challenge(client, device_id)
    report = signed_report(
        key,
        device_id=device_id,
        nonce=issued["nonce"],
        policy_hash=issued["policy_hash"],
        facts=facts if facts is not None else collected_facts(device_id=device_id, kind=kind),
        kind=kind,
    )
    return client.post(f"/api/v1/devices/{device_id}/attest", json=report)


def proof_headers(
    key: Ed25519PrivateKey, token: str, jti: str, *, method: str = "GET", url: str, nonce: str | None = None
) -> dict[str, str]:
    """``X-Posture-Token`` and a fresh ``X-Posture-Proof`` for one request."""
    proof = sign_request_proof(
        key,
        method=method,
        url=url,
        token_jti=jti,
        iat=utcnow(),
        nonce=nonce or secrets.token_urlsafe(16),
    )
    return {"X-Posture-Token": token, "X-Posture-Proof": proof}


@contextmanager
def app_client(
    db_url: str, tmp_path: Path, environment: Environment
) -> Iterator[tuple[TestClient, Services]]:
    """A running app (lifespan and all) whose settings name ``environment``."""
    settings = make_settings(db_url, tmp_path / "data", environment=environment)
    services = Services.build(settings)
    try:
        with TestClient(create_app(settings, services=services)) as client:
            yield client, services
    finally:
        services.engine.dispose()
