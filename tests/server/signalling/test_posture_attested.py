"""A device in a live call attests through the real API: turning non-compliant suspends it at once,
and the posture token it held before the failure cannot bring it back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from jose import jwt as jose_jwt

from device_policy.proof import sign_request_proof
from server.db import utcnow
from server.identity.models import Role
from tests.server.devices.helpers import collected_facts, signed_report
from tests.server.factories import PASSWORD, add_user, bearer
from tests.support.signalling_scene import Enrolled, Scene, audited


async def _attest(scene: Scene, device: Enrolled, profile: str) -> httpx.Response:
    """Challenge, collect, sign and attest as the device agent does, over HTTP."""
    base = scene.server.base_url
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        issued = (await http.post(f"/api/v1/devices/{device.id}/challenge")).json()
        report = signed_report(
            device.key,
            device_id=device.id,
            nonce=issued["nonce"],
            policy_hash=issued["policy_hash"],
            facts=collected_facts(profile, device_id=device.id, kind=device.kind.value),
            kind=device.kind.value,
        )
        return await http.post(f"/api/v1/devices/{device.id}/attest", json=report)


def _fields(
    scene: Scene, device: Enrolled, posture_token: str, join_token: str, *, age_s: int = 0
) -> dict[str, Any]:
    # A proof is deterministic (Ed25519) for token, URL, nonce and second: age_s makes another.
    proof = sign_request_proof(
        device.key,
        method="WS",
        url=scene.server.ws_url,
        token_jti=jose_jwt.get_unverified_claims(posture_token)["jti"],
        iat=utcnow() - timedelta(seconds=age_s),
        nonce=jose_jwt.get_unverified_claims(join_token)["jti"],
    )
    return {"posture_token": posture_token, "posture_proof": proof}


async def test_a_device_turning_non_compliant_mid_call_is_suspended_and_its_old_token_is_dead(
    scene: Scene,
) -> None:
    host = await scene.join_host()
    passed = await _attest(scene, scene.room, "compliant")
    assert passed.status_code == 200, passed.text
    good = passed.json()["posture_token"]
    join = scene.room_token()
    room = await scene.join(join, **_fields(scene, scene.room, good, join))
    await scene.admitted(host, room)

    failed = await _attest(scene, scene.room, "firewall-off")
    assert failed.status_code == 403 and failed.json()["code"] == "policy_failed"
    assert (await room.expect("suspended"))["reason"] == "policy_failed"
    told = await host.expect("participant.suspended")
    assert (told["participant"]["id"], told["reason"]) == (room.id, "policy_failed")
    await audited(scene, ("signalling.suspended", "denied"))

    # The token from before the failure is still unexpired, but it no longer vouches for the device.
    again = await room.request("posture", **_fields(scene, scene.room, good, join, age_s=2))
    assert (again["type"], again["code"]) == ("error", "posture_refused")
    assert again["message"].startswith("invalid_posture_token") and "failed posture check" in again["message"]
    assert "participant.returned" not in host.types()

    # Only a fresh pass brings it back, and then to the waiting room.
    fixed = await _attest(scene, scene.room, "compliant")
    assert fixed.status_code == 200, fixed.text
    back = await room.request("posture", **_fields(scene, scene.room, fixed.json()["posture_token"], join))
    assert back["type"] == "posture.accepted"
    assert (await host.expect("participant.returned"))["participant"]["status"] == "waiting"


async def test_a_host_on_a_prison_laptop_joins_only_with_that_laptop_s_posture(scene: Scene) -> None:
    token = scene.host_token(device=scene.laptop)
    bare = await scene.connect()
    await bare.send(type="hello", join_token=token)
    assert (await bare.expect("error"))["code"] == "posture_required"
    assert await bare.closed() == 4403

    token = scene.host_token(device=scene.laptop)
    other = await scene.connect()
    await other.send(type="hello", join_token=token, **scene.posture_fields(scene.room, token))
    assert (await other.expect("error"))["code"] == "forbidden"
    assert await other.closed() == 4403

    token = scene.host_token(device=scene.laptop)
    host = await scene.join(token, **scene.posture_fields(scene.laptop, token))
    assert host.welcome["role"] == "host" and isinstance(host.welcome["posture_expires_at"], int)


async def test_revoking_a_device_through_the_api_suspends_it_in_the_call_at_once(scene: Scene) -> None:
    add_user(scene.services, "root", role=Role.ADMIN)
    host = await scene.join_host()
    room = await scene.join_room()
    await scene.admitted(host, room)
    async with httpx.AsyncClient(base_url=scene.server.base_url, timeout=10) as http:
        signed_in = await http.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
        admin = bearer(signed_in.json()["access_token"])
        revoked = await http.post(
            f"/api/v1/devices/{scene.room.id}/revoke", json={"reason": "stolen"}, headers=admin
        )
    assert revoked.status_code == 200, revoked.text
    assert (await room.expect("suspended"))["reason"] == "device_revoked"
    told = await host.expect("participant.suspended")
    assert (told["participant"]["id"], told["reason"]) == (room.id, "device_revoked")
    await audited(scene, ("signalling.suspended", "denied"))
