"""The audit witness and the server's side of it, against a real server on SQLite and PostgreSQL:
it co-signs a growing log, refuses a rolled-back head and a rewritten (re-signed) history, and its
cosignatures make the offline verifier fail on truncation or rewrite below the witnessed size —
even when the insider deleted the checkpoints and re-signed with the audit key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from records.audit.log import create_checkpoint
from records.audit.signing import public_key_pem
from records.audit.witness import WitnessRefused, WitnessStore, read_cosignatures, verify_cosignature
from server.audit import record_event
from server.audit_witness import run_round
from server.identity.models import Role
from server.services import Services
from tests.records.audit_helpers import cut_log, rewrite_history, roll_back_head
from tests.server.factories import PASSWORD, add_user, bearer, login
from tests.server.records_fixtures import telemed
from tests.support.live_server import LiveServer


def _grow(services: Services, count: int) -> int:
    """Append ``count`` record-access events and sign a checkpoint; returns its tree size."""
    assert services.records is not None
    for n in range(count):
        with Session(services.engine) as session:
            record_event(
                session=session,
                action="document.read",
                outcome="allowed" if n % 3 else "denied",
                actor_id=f"user-{n % 4}",
                actor_role="clinician",
                patient_id="patient-x",
                purpose_of_use="TREAT",
                detail={"n": n},
            )
            session.commit()
    made = services.records.checkpoint()
    assert made is not None
    return made.tree_size


def _resign(services: Services) -> int:
    """The insider signs the tampered head with the audit key (they have it)."""
    assert services.records is not None
    with Session(services.engine) as session:
        made = create_checkpoint(session=session, private_key=services.records.vault.audit_key)
        session.commit()
    assert made is not None
    return made.tree_size


def _store(services: Services, tmp_path: Path) -> WitnessStore:
    assert services.records is not None
    store = WitnessStore(tmp_path / "witness")
    store.init(public_key_pem(services.records.vault.audit_key).encode())
    return store


@pytest.fixture
def admin(client: TestClient, services: Services) -> str:
    add_user(services, "auditor", Role.ADMIN)
    token: str = login(client, "auditor")["access_token"]
    return token


def test_the_witness_cosigns_a_growing_log(
    client: TestClient, services: Services, admin: str, tmp_path: Path
) -> None:
    store = _store(services, tmp_path)
    first = _grow(services, 12)
    assert run_round(http=client, token=admin, store=store).outcome == "cosigned"
    second = _grow(services, 9)
    result = run_round(http=client, token=admin, store=store)
    assert (result.outcome, result.tree_size) == ("cosigned", second)
    again = run_round(http=client, token=admin, store=store)
    assert (again.outcome, again.tree_size) == ("nothing_new", second)
    cosigned = store.cosignatures()
    assert [c.tree_size for c in cosigned] == [first, second]
    witness_key = store.private_key().public_key()
    assert all(verify_cosignature(c, witness_key) for c in cosigned)
    assert oct(store.cosignatures_file.stat().st_mode & 0o777) == "0o600"
    assert oct((store.directory / "witness-ed25519.pem").stat().st_mode & 0o777) == "0o600"


def test_the_consistency_endpoint_answers_proofs_and_refuses_bad_ranges(
    client: TestClient, services: Services, admin: str
) -> None:
    size = _grow(services, 10)
    resp = client.get("/api/v1/audit/consistency", params={"first": 4, "second": size}, headers=bearer(admin))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["first"] == 4 and body["second"] == size and len(body["proof"]) >= 1
    for params in ({"first": 5, "second": 4}, {"first": 1, "second": 10_000}):
        bad = client.get("/api/v1/audit/consistency", params=params, headers=bearer(admin))
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["code"] == "audit_range_invalid"
    negative = client.get(
        "/api/v1/audit/consistency", params={"first": -1, "second": 4}, headers=bearer(admin)
    )
    assert negative.status_code == 422
    add_user(services, "clinician1", Role.CLINICIAN)
    other = login(client, "clinician1")["access_token"]
    refused = client.get("/api/v1/audit/consistency", params={"first": 1, "second": 2}, headers=bearer(other))
    assert refused.status_code == 403
    assert client.get("/api/v1/audit/consistency", params={"first": 1, "second": 2}).status_code == 401


def test_the_server_reports_a_rolled_back_head_as_truncated(
    client: TestClient, services: Services, admin: str
) -> None:
    size = _grow(services, 12)
    roll_back_head(services.engine, size - 2)
    report = client.get("/api/v1/audit/verify", headers=bearer(admin)).json()
    assert (report["ok"], report["problem"], report["first_bad_seq"]) == (False, "truncated", size - 1)
    assert f"covers {size} entries" in report["message"]
    code, out = telemed(services.settings, "audit", "checkpoint")
    assert code == 1 and "audit_log_corrupt" in out and f"covers {size} entries" in out, out


def test_the_witness_refuses_a_rolled_back_head(
    client: TestClient, services: Services, admin: str, tmp_path: Path
) -> None:
    store = _store(services, tmp_path)
    size = _grow(services, 14)
    run_round(http=client, token=admin, store=store)
    cut_log(services.engine, size - 4)
    _resign(services)
    with pytest.raises(WitnessRefused, match=f"Rollback: the newest checkpoint covers {size - 4} entries"):
        run_round(http=client, token=admin, store=store)
    assert [c.tree_size for c in store.cosignatures()] == [size]


@pytest.mark.parametrize("grow_after", [False, True], ids=["same-size", "grown"])
def test_the_witness_refuses_a_rewritten_history(
    client: TestClient, services: Services, admin: str, tmp_path: Path, grow_after: bool
) -> None:
    store = _store(services, tmp_path)
    size = _grow(services, 14)
    run_round(http=client, token=admin, store=store)
    rewrite_history(services.engine, 3)
    resigned = _grow(services, 5) if grow_after else _resign(services)
    assert resigned == (size + 5 if grow_after else size)
    plain = client.get("/api/v1/audit/verify", headers=bearer(admin)).json()
    assert plain["ok"] is True  # the database alone no longer shows it: the audit key re-signed it
    with pytest.raises(WitnessRefused, match="Fork"):
        run_round(http=client, token=admin, store=store)
    assert [c.tree_size for c in store.cosignatures()] == [size]


def _verify_with_witness(services: Services, tmp_path: Path, store: WitnessStore) -> tuple[int, str]:
    export = tmp_path / "export.jsonl"
    code, out = telemed(services.settings, "audit", "export", "--output", str(export))
    assert code == 0, out
    key = tmp_path / "audit.pub"
    code, out = telemed(services.settings, "audit", "public-key", "--output", str(key))
    assert code == 0, out
    code, plain = telemed(services.settings, "audit", "verify", str(export), "--public-key", str(key))
    assert code == 0 and "OK" in plain, plain  # without the witness, the tampering is invisible
    return telemed(
        services.settings,
        "audit",
        "verify",
        str(export),
        "--public-key",
        str(key),
        "--witness-key",
        str(store.public_key_file),
        "--cosignatures",
        str(store.cosignatures_file),
    )


def test_offline_verify_with_the_witness_passes_an_intact_log(
    client: TestClient, services: Services, admin: str, tmp_path: Path
) -> None:
    store = _store(services, tmp_path)
    size = _grow(services, 8)
    run_round(http=client, token=admin, store=store)
    code, out = _verify_with_witness(services, tmp_path, store)
    assert code == 0 and f"entries 1..{size} are witnessed" in out, out


def test_offline_verify_with_the_witness_fails_after_truncation_below_the_witnessed_size(
    client: TestClient, services: Services, admin: str, tmp_path: Path
) -> None:
    store = _store(services, tmp_path)
    first = _grow(services, 8)
    run_round(http=client, token=admin, store=store)
    size = _grow(services, 8)
    run_round(http=client, token=admin, store=store)
    cut_log(services.engine, size - 6)
    _resign(services)
    code, out = _verify_with_witness(services, tmp_path, store)
    assert code == 1, out
    # The export's own audit.export entry follows the cut: the log now ends at size - 5.
    assert f"FAILED (truncated at seq {size - 4})" in out and f"over {size} entries" in out, out
    assert first < size - 6


def test_offline_verify_with_the_witness_fails_after_a_resigned_rewrite(
    client: TestClient, services: Services, admin: str, tmp_path: Path
) -> None:
    store = _store(services, tmp_path)
    size = _grow(services, 10)
    run_round(http=client, token=admin, store=store)
    rewrite_history(services.engine, 4)
    _resign(services)
    code, out = _verify_with_witness(services, tmp_path, store)
    assert code == 1, out
    assert "FAILED (witness_mismatch at seq 1)" in out and f"tree size {size}" in out, out


def test_a_tampered_cosignature_file_fails_verification(
    client: TestClient, services: Services, admin: str, tmp_path: Path
) -> None:
    store = _store(services, tmp_path)
    _grow(services, 6)
    run_round(http=client, token=admin, store=store)
    line = json.loads(store.cosignatures_file.read_text())
    line["tree_size"] += 1
    store.cosignatures_file.write_text(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n")
    code, out = _verify_with_witness(services, tmp_path, store)
    assert code == 1 and "FAILED (forged_cosignature)" in out, out


def test_the_witness_command_cosigns_and_refuses_against_a_live_server(
    app: FastAPI, services: Services, tmp_path: Path
) -> None:
    add_user(services, "auditor", Role.ADMIN)
    token_file = tmp_path / "token"
    audit_pub = tmp_path / "audit.pub"
    directory = tmp_path / "witness"
    init = ("audit", "witness", "init", "--dir", str(directory), "--audit-public-key", str(audit_pub))
    with LiveServer(app) as server:
        assert services.records is not None
        audit_pub.write_text(public_key_pem(services.records.vault.audit_key))
        code, out = telemed(services.settings, *init)
        assert code == 0 and "witness-public.pem" in out, out
        code, out = telemed(services.settings, *init)
        assert code == 2 and "already exists" in out, out
        resp = httpx.post(
            f"{server.base_url}/api/v1/auth/login", json={"username": "auditor", "password": PASSWORD}
        )
        token_file.write_text(resp.json()["access_token"])
        size = _grow(services, 6)
        args = ("audit", "witness", "run", "--dir", str(directory), "--server", server.base_url)
        code, out = telemed(services.settings, *args, "--token-file", str(token_file), "--once")
        assert code == 0 and f"Co-signed the checkpoint at tree size {size}" in out, out
        bad_token = tmp_path / "bad-token"
        bad_token.write_text("not-a-token")
        code, out = telemed(services.settings, *args, "--token-file", str(bad_token), "--once")
        assert code == 2 and "HTTP 401" in out, out
        cut_log(services.engine, size - 3)
        _resign(services)
        code, out = telemed(services.settings, *args, "--token-file", str(token_file), "--once")
        assert code == 1 and "REFUSED: Rollback" in out and "Nothing was co-signed" in out, out
    assert len(read_cosignatures(store_file := (directory / "cosignatures.jsonl").open())) == 1
    store_file.close()
