"""The clinician's laptop loses its SIM mid-consultation: the next periodic re-attestation fails,
and the host is suspended at once, its record grant dies, the room is told, the audit says why.

tests/server/signalling/test_posture*.py cover suspension on raw sockets (a room turning
non-compliant, lapsed and refused tokens, revocation). This is the same fault end to end on
the clinician's side: a host on the prison laptop through the SDK, live, with media flowing
and a record grant in use, whose laptop agent re-attests on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta

import pytest

from clinic_client.posture import PostureCheckFailed, PostureError, PostureResult
from clinic_client.records import RecordsRefused
from records.audit.log import iter_entries
from server.db import session_scope
from tests.clinic_client.test_call_e2e import Call, media_flows
from tests.support.signalling_scene import Scene, SceneFactory

from .laptop import host_on_laptop

pytestmark = pytest.mark.slow

SIM_RULES = {"sim-iccid-enrolled", "sim-imsi-enrolled"}  # another SIM: neither identifier matches


def audit_since(scene: Scene, seq: int) -> list[tuple[str, str, dict[str, object]]]:
    """``(action, outcome, detail)`` of every audit entry after ``seq``."""
    with session_scope(scene.services.engine) as session:
        out: list[tuple[str, str, dict[str, object]]] = []
        for entry in iter_entries(session=session, from_seq=seq + 1):
            detail = entry.detail if isinstance(entry.detail, dict) else json.loads(entry.detail or "{}")
            out.append((entry.action, entry.outcome, detail))
        return out


def last_seq(scene: Scene) -> int:
    with session_scope(scene.services.engine) as session:
        return max((e.seq for e in iter_entries(session=session)), default=0)


async def test_a_laptop_that_loses_its_sim_mid_call_suspends_its_host_and_kills_its_grant(
    make_scene: SceneFactory,
) -> None:
    scene = make_scene()
    call = Call(scene)
    host = await host_on_laptop(call)
    reattesting: asyncio.Task[None] | None = None
    try:
        room = await call.room()
        await call.admit(host.party, room)
        scene.prepare_start()
        await host.party.session.start_consultation()
        await host.party.session.wait_until(lambda s: s.consultation_state == "live")
        await media_flows([host.party, room])
        grant = await host.records.grant(scene.consultation_id)
        assert (await host.records.patient(grant))["prison_number"] == "A1234BC"
        before = last_seq(scene)

        # The SIM is swapped out; the laptop agent's next periodic re-attestation reports it.
        host.facts.profile = "wrong-sim"
        passed: list[PostureResult] = []
        failed: list[PostureError] = []
        reattesting = asyncio.create_task(
            host.agent.run_reattestation(
                every=timedelta(seconds=0.5), on_token=passed.append, on_failure=failed.append
            )
        )

        # The host is suspended, with the reason, and its media is hung up.
        state = await host.party.session.wait_until(lambda s: s.status == "suspended", timeout=20)
        assert state.reason == "policy_failed"
        assert passed == []
        refusal = failed[0]
        assert isinstance(refusal, PostureCheckFailed) and refusal.code == "policy_failed"
        assert {rule.id for rule in refusal.failed_rules} == SIM_RULES
        assert host.party.session.call is not None and host.party.session.call.participants == []

        # The room is told, and stops its media with the host.
        told = await room.session.wait_until(
            lambda s: any(p.role == "host" and p.status == "suspended" for p in s.others), timeout=10
        )
        assert told.status == "admitted"
        assert room.session.call is not None and host.party.id not in room.session.call.participants

        # The grant issued before the failure is dead at once (its deny-list, not its expiry).
        with pytest.raises(RecordsRefused) as refused:
            await host.records.patient(grant)
        assert (refused.value.code, refused.value.status) == ("grant_revoked", 401)
        assert grant.expires_in() > timedelta(minutes=1)

        # The audit says why: the failed check with its rules, the revoked grant, the suspension.
        entries = audit_since(scene, before)
        check = next(e for e in entries if e[0] == "device.check")
        assert (check[1], check[2]["code"]) == ("failure", "policy_failed")
        assert set(check[2]["failed_rules"]) == SIM_RULES  # type: ignore[call-overload]
        revoked = [e for e in entries if e[0] == "grant.revoke"]
        assert revoked and revoked[0][2].get("reason") == "policy_failed", revoked
        suspended = [e for e in entries if e[0] == "signalling.suspended"]
        assert suspended and suspended[0][1] == "denied" and suspended[0][2]["reason"] == "policy_failed"
        assert suspended[0][2]["participant"] == host.party.id
        assert ("grant.use", "denied", {"reason": "grant_revoked"}) in entries  # the refused read
        actions = [e[0] for e in entries]
        assert actions.index("device.check") < actions.index("grant.revoke") < actions.index("grant.use")
    finally:
        if reattesting is not None:
            reattesting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reattesting
        await host.records.aclose()
        await call.close()
