"""Audit key rotation end to end, on SQLite and PostgreSQL: entries are checkpointed under the old key,
``telemed audit rotate-key`` runs beside the running server, more entries are checkpointed under the
new key (no restart), and the log verifies everywhere — ``GET /api/v1/audit/verify``, the admin
console's integrity check, and an export checked offline with ``telemed audit verify``. A checkpoint
signed by a key outside the set then fails everywhere as ``unknown_key``."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session

from records.audit.checkpoint import audit_key_id
from records.audit.keyring import public_keys_path
from records.audit.log import create_checkpoint
from records.audit.signing import load_audit_key, load_public_keys, public_key_pem
from server.services import Services
from tests.server.admin.conftest import Clinic
from tests.server.admin.test_audit import read_document
from tests.server.records_fixtures import telemed


def _api(clinic: Clinic, path: str) -> Any:
    answer = clinic.ward.client.get(f"/api/v1/audit/{path}", headers=clinic.ward.admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _console_verify(clinic: Clinic) -> dict[str, Any]:
    answer = clinic.console.post("/admin/api/integrity/verify")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _export_and_verify(services: Services, tmp_path: Path, keys: Path) -> tuple[str, int, str]:
    target = tmp_path / f"export-{len(list(tmp_path.glob('export-*')))}.jsonl"
    code, exported = telemed(services.settings, "audit", "export", "--output", str(target))
    assert code == 0, exported
    code, out = telemed(services.settings, "audit", "verify", str(target), "--public-key", str(keys))
    return exported, code, out


def test_a_log_signed_before_and_after_a_rotation_verifies_everywhere(
    clinic: Clinic, services: Services, tmp_path: Path
) -> None:
    runtime = services.records
    key_file = services.settings.audit_key_file
    assert runtime is not None and key_file is not None
    read_document(clinic)
    before = runtime.checkpoint()
    assert before is not None
    old_id = before.key_id

    code, out = telemed(services.settings, "audit", "rotate-key")

    assert code == 0, out
    new_id = audit_key_id(load_audit_key(key_file).public_key())
    assert new_id != old_id
    ring = public_keys_path(key_file)
    assert f"New audit key {new_id} in {key_file} (mode 600)." in out
    assert f"Retired audit key {old_id}: its private key was replaced; its checkpoints still verify." in out
    assert f"Every audit public key (2, the new one last): {ring}" in out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [audit_key_id(k) for k in load_public_keys(ring.read_bytes())] == [old_id, new_id]

    # The running server signs with the new key at its next checkpoint: no restart.
    read_document(clinic)
    after = runtime.checkpoint()
    assert after is not None and after.key_id == new_id and after.tree_size > before.tree_size
    assert _api(clinic, "checkpoints/latest")["key_id"] == new_id
    published = _api(clinic, "public-key")
    assert clinic.ward.client.get("/api/v1/audit/public-key").json() == published  # no sign-in needed
    assert published["key_id"] == new_id
    assert [(k["key_id"], k["current"]) for k in published["keys"]] == [(old_id, False), (new_id, True)]

    report = _api(clinic, "verify")
    assert report["ok"] is True, report
    assert report["checkpoints_checked"] >= 3
    console = _console_verify(clinic)
    assert console["ok"] is True and console["status"] == "ok", console

    keys = tmp_path / "audit-keys.pem"
    code, out = telemed(services.settings, "audit", "public-key", "--output", str(keys))
    assert code == 0 and f"key id {old_id} (retired)" in out and f"key id {new_id} (current)" in out, out
    exported, code, out = _export_and_verify(services, tmp_path, keys)
    assert f"Checkpoints signed by audit keys {old_id}, {new_id};" in exported
    assert code == 0 and "OK" in out and "every entry is covered by a signed checkpoint" in out, out

    # Only the new key: the old key's checkpoints cannot be checked, and the verifier says which key.
    new_only = tmp_path / "new-only.pem"
    new_only.write_text(public_key_pem(load_audit_key(key_file)))
    _exported, code, out = _export_and_verify(services, tmp_path, new_only)
    assert code == 1 and "FAILED (unknown_key):" in out and f"names audit key {old_id}" in out, out


def test_a_checkpoint_signed_by_a_key_outside_the_set_fails_everywhere(
    clinic: Clinic, services: Services, tmp_path: Path
) -> None:
    assert services.records is not None
    services.records.checkpoint()
    code, out = telemed(services.settings, "audit", "rotate-key")
    assert code == 0, out
    read_document(clinic)
    outsider = Ed25519PrivateKey.generate()
    with Session(services.engine) as session:
        forged = create_checkpoint(session=session, private_key=outsider)
        session.commit()
    assert forged is not None and forged.key_id == audit_key_id(outsider.public_key())

    report = _api(clinic, "verify")
    assert report["ok"] is False and report["problem"] == "unknown_key", report
    assert report["first_bad_seq"] is None
    assert (
        f"tree size {forged.tree_size} names audit key {forged.key_id}, which is not the 2"
        in report["message"]
    )
    console = _console_verify(clinic)
    assert console["ok"] is False and console["problem"] == "unknown_key"
    assert "A checkpoint is signed by a key that is not one of this server's audit keys" in console["summary"]

    keys = tmp_path / "audit-keys.pem"
    code, out = telemed(services.settings, "audit", "public-key", "--output", str(keys))
    assert code == 0, out
    _exported, code, out = _export_and_verify(services, tmp_path, keys)
    assert code == 1 and "FAILED (unknown_key):" in out and forged.key_id in out, out
