"""PostgreSQL crashes mid-consultation and comes back: the server answers 503, the call goes on,
nothing acknowledged is lost, and everything works again without restarting the server.

The server runs on a private PostgreSQL cluster (tests/support/private_postgres.py; the
shared one on :5432 is never touched), crashed with ``pg_ctl stop -m immediate`` — no
shutdown checkpoint, so the restart replays the WAL as after a power cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from jose import jwt as jose_jwt

from clinic_client.records import RecordsRefused
from clinic_client.signalling import RequestRefused
from records.audit.log import iter_entries
from server.db import session_scope, upgrade_database
from server.identity.models import Role
from tests.clinic_client.test_call_e2e import Call, media_flows
from tests.server.factories import PASSWORD, add_user, bearer
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.signalling_scene import Scene, SceneFactory

from .laptop import host_on_laptop

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# A request that has not been answered in this long is hung, whatever it would have said.
HANG_S = 10.0
NOTE = "Wound reviewed; dressing changed. Review in 48 hours."


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        upgrade_database(pg.url)
        yield pg


@pytest.fixture
def scene_db_url(cluster: PrivatePostgres) -> str:
    """The scene's server runs on the private cluster (instead of a SQLite copy)."""
    return cluster.url


def audit_trail(scene: Scene) -> list[tuple[int, str, str]]:
    """``(seq, action, entry hash)`` of every audit entry."""
    with session_scope(scene.services.engine) as session:
        return [(e.seq, e.action, e.entry_hash) for e in iter_entries(session=session)]


def assert_unavailable(response: httpx.Response) -> None:
    """A fast, clear refusal: 503 ``database_unavailable`` with ``Retry-After``."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "database_unavailable", body
    assert int(response.headers["Retry-After"]) >= 1
    assert body["retry_after_s"] == int(response.headers["Retry-After"])


async def test_a_database_crash_mid_call_loses_nothing_and_heals_without_a_restart(
    make_scene: SceneFactory, cluster: PrivatePostgres
) -> None:
    scene = make_scene()
    add_user(scene.services, "root", role=Role.ADMIN)
    call = Call(scene)
    host = await host_on_laptop(call)
    try:
        room = await call.room()
        await call.admit(host.party, room)
        scene.prepare_start()
        await host.party.session.start_consultation()
        await host.party.session.wait_until(lambda s: s.consultation_state == "live")
        await media_flows([host.party, room])
        grant = await host.records.grant(scene.consultation_id)
        note = await host.records.write_note(grant, NOTE)
        late_joiner = scene.specialist_token()  # redeemed before the crash, used during it
        acknowledged = audit_trail(scene)
        assert {"grant.issue", "note.create"} <= {action for _, action, _ in acknowledged}

        cluster.crash()

        async with httpx.AsyncClient(base_url=scene.server.base_url, timeout=HANG_S) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["code"] == "service_unavailable", ready.text
            assert ready.json()["checks"] == {"database": "down"}
            assert_unavailable(await http.get("/api/v1/me", headers=bearer(host.access_token)))
            assert_unavailable(
                await http.post("/api/v1/auth/login", json={"username": "doctor", "password": PASSWORD})
            )
        with pytest.raises(RecordsRefused) as refused:
            await host.records.notes(grant)
        assert (refused.value.code, refused.value.status) == ("database_unavailable", 503)
        joining = await scene.connect()
        await joining.send(type="hello", join_token=late_joiner)
        refused_hello = await joining.expect("error")
        assert refused_hello["code"] == "service_unavailable", refused_hello
        assert await joining.closed() == 1013  # try again later
        # The laptop's posture cannot be checked now: refused, but the host is not suspended for it.
        posture = host.agent.current
        assert posture is not None
        client = host.party.session.client
        proof = host.agent.proof(
            "WS", client.url, nonce=jose_jwt.get_unverified_claims(host.join_token)["jti"], token=posture
        )
        with pytest.raises(RequestRefused) as not_checked:
            await client.request("posture", posture_token=posture.token, posture_proof=proof)
        assert not_checked.value.code == "service_unavailable"
        # The call does not need the database: both sides keep decoding fresh video.
        await media_flows([host.party, room])
        assert host.party.session.state.status == room.session.state.status == "admitted"
        assert all(p.status == "admitted" for p in room.session.state.others)

        cluster.start()

        async with httpx.AsyncClient(base_url=scene.server.base_url, timeout=HANG_S) as http:
            async with asyncio.timeout(30):  # the server reconnects by itself; no restart
                while (await http.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.2)
            me = await http.get("/api/v1/me", headers=bearer(host.access_token))
            assert me.status_code == 200 and me.json()["username"] == "doctor", me.text
            signed_in = await http.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
            assert signed_in.status_code == 200, signed_in.text
            verified = await http.get(
                "/api/v1/audit/verify", headers=bearer(signed_in.json()["access_token"])
            )
            assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text

        # What was acknowledged before the crash is all there, in the same order, unchanged.
        assert audit_trail(scene)[: len(acknowledged)] == acknowledged
        notes = await host.records.notes(grant)
        assert [(n["id"], n["versions"][-1]["text"]) for n in notes] == [(note["id"], NOTE)]

        # A new participant joins and is admitted through the same server process.
        specialist = await call.specialist()
        await call.admit(host.party, specialist)
        assert specialist.session.state.status == "admitted"
        await media_flows([host.party, room])
    finally:
        await host.records.aclose()
        await call.close()
