"""Using a posture token: key binding, proofs, replay, revocation at once — on both databases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlmodel import Session

from device_policy.errors import DeviceRevoked, InvalidRequestProof, KeyBindingMismatch
from device_policy.keys import generate_device_key
from device_policy.proof import sign_request_proof
from server.db import utcnow
from server.devices.posture import verify_posture
from server.services import Services
from tests.server.devices.helpers import admin_headers, attest, collected_facts, enrol, proof_headers
from tests.server.factories import add_user, login

ME = "http://testserver/api/v1/devices/me/posture"


def _compliant(client: TestClient, services: Services, device_id: str = "laptop-01") -> tuple[Any, ...]:
    admin = admin_headers(client, services)
    key = enrol(client, admin, device_id)
    body = attest(client, device_id, key).json()
    return admin, key, body["posture_token"], body["token_jti"]


def _code(resp: Any, status: int = 401) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    code: str = resp.json()["code"]
    return code


def test_token_with_a_proof_from_the_device_key_is_accepted(client: TestClient, services: Services) -> None:
    _admin, key, token, jti = _compliant(client, services)
    resp = client.get(ME, headers=proof_headers(key, token, jti, url=ME))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["device_id"] == "laptop-01" and body["device_kind"] == "prison_laptop"
    assert body["jti"] == jti and body["policy_version"]


def test_token_with_a_proof_from_another_key_is_a_binding_mismatch(
    client: TestClient, services: Services
) -> None:
    admin, _key, token, jti = _compliant(client, services)
    # Another enrolled device's genuine key, trying to ride on laptop-01's token.
    other = enrol(client, admin, "laptop-02")
    assert _code(client.get(ME, headers=proof_headers(other, token, jti, url=ME))) == "key_binding_mismatch"
    stranger = generate_device_key()
    assert (
        _code(client.get(ME, headers=proof_headers(stranger, token, jti, url=ME))) == "key_binding_mismatch"
    )


def test_token_and_proof_are_both_required(client: TestClient, services: Services) -> None:
    _admin, key, token, jti = _compliant(client, services)
    headers = proof_headers(key, token, jti, url=ME)
    assert _code(client.get(ME, headers={"X-Posture-Token": token})) == "invalid_proof"
    assert _code(client.get(ME, headers={"X-Posture-Proof": headers["X-Posture-Proof"]})) == (
        "invalid_posture_token"
    )
    assert _code(client.get(ME)) == "invalid_posture_token"


def test_proof_is_single_use_and_bound_to_method_url_and_token(
    client: TestClient, services: Services
) -> None:
    _admin, key, token, jti = _compliant(client, services)
    headers = proof_headers(key, token, jti, url=ME)
    assert client.get(ME, headers=headers).status_code == 200
    assert _code(client.get(ME, headers=headers)) == "proof_replayed"
    other_url = proof_headers(key, token, jti, url="http://testserver/api/v1/devices/me/join-token")
    assert _code(client.get(ME, headers=other_url)) == "invalid_proof"
    other_method = proof_headers(key, token, jti, method="POST", url=ME)
    assert _code(client.get(ME, headers=other_method)) == "invalid_proof"
    other_token = proof_headers(key, token, "another-jti", url=ME)
    assert _code(client.get(ME, headers=other_token)) == "invalid_proof"


def test_revocation_refuses_an_unexpired_token_at_once(client: TestClient, services: Services) -> None:
    admin, key, token, jti = _compliant(client, services)
    assert client.get(ME, headers=proof_headers(key, token, jti, url=ME)).status_code == 200
    assert client.post("/api/v1/devices/laptop-01/revoke", headers=admin).status_code == 200
    assert _code(client.get(ME, headers=proof_headers(key, token, jti, url=ME)), 403) == "device_revoked"


def test_tokens_that_are_not_posture_tokens_are_refused(client: TestClient, services: Services) -> None:
    _admin, key, _token, _jti = _compliant(client, services)
    add_user(services, "alice")
    access = login(client, "alice")["access_token"]
    assert _code(client.get(ME, headers=proof_headers(key, access, "x", url=ME))) == "invalid_posture_token"
    assert (
        _code(client.get(ME, headers=proof_headers(key, "not.a.jwt", "x", url=ME))) == "invalid_posture_token"
    )


def test_verify_posture_for_a_socket_binds_the_proof_to_the_join_token(
    client: TestClient, services: Services
) -> None:
    _admin, key, token, jti = _compliant(client, services)
    url = "ws://testserver/ws/signalling"

    def proof(signing_key: Ed25519PrivateKey, nonce: str) -> str:
        return sign_request_proof(signing_key, method="WS", url=url, token_jti=jti, iat=utcnow(), nonce=nonce)

    with Session(services.engine) as session:
        ctx = verify_posture(
            services=services,
            session=session,
            token=token,
            proof=proof(key, "join-jti-1"),
            method="WS",
            url=url,
            nonce="join-jti-1",
        )
        assert ctx.device_id == "laptop-01" and ctx.jti == jti
        with pytest.raises(InvalidRequestProof):
            verify_posture(
                services=services,
                session=session,
                token=token,
                proof=proof(key, "join-jti-2"),
                method="WS",
                url=url,
                nonce="join-jti-1",
            )
        with pytest.raises(KeyBindingMismatch):
            verify_posture(
                services=services,
                session=session,
                token=token,
                proof=proof(generate_device_key(), "join-jti-1"),
                method="WS",
                url=url,
                nonce="join-jti-1",
            )


@dataclass
class FakeHub:
    """Records what the posture service asked the signalling hub to do."""

    suspended: list[tuple[str, str]] = field(default_factory=list)

    async def suspend_device(self, device_id: str, reason: str) -> None:
        self.suspended.append((device_id, reason))


def test_revocation_and_failed_checks_suspend_the_device_in_calls(
    client: TestClient, services: Services
) -> None:
    hub = FakeHub()
    services.hub = hub  # type: ignore[attr-defined]
    admin = admin_headers(client, services)
    key = enrol(client, admin, "laptop-01")
    enrol(client, admin, "laptop-02")
    assert attest(client, "laptop-01", key).status_code == 200
    assert attest(client, "laptop-01", generate_device_key()).json()["code"] == "bad_signature"
    assert hub.suspended == []  # nobody without the key can get a device thrown out of a call
    facts = collected_facts("wrong-sim", device_id="laptop-01")
    assert attest(client, "laptop-01", key, facts=facts).json()["code"] == "policy_failed"
    assert client.post("/api/v1/devices/laptop-02/revoke", headers=admin).status_code == 200
    assert hub.suspended == [("laptop-01", "policy_failed"), ("laptop-02", "device_revoked")]


def test_revoked_device_raises_in_verify_posture(client: TestClient, services: Services) -> None:
    admin, _key, token, _jti = _compliant(client, services)
    client.post("/api/v1/devices/laptop-01/revoke", headers=admin)
    with Session(services.engine) as session, pytest.raises(DeviceRevoked):
        verify_posture(services=services, session=session, token=token, proof=None, method="GET", url=ME)
