"""``telemed audit rotate-key``: a new private key (600) replaces the old one, the public keys are
kept, the rotation is audited and signed under the new key; a key file that does not load is
refused with exit 1 and a plain message, and nothing is rotated. On SQLite and PostgreSQL."""

from __future__ import annotations

import stat

from fastapi.testclient import TestClient
from sqlmodel import Session

from records.audit.checkpoint import audit_key_id
from records.audit.keyring import public_keys_path
from records.audit.log import iter_entries, latest_checkpoint
from records.audit.signing import load_audit_key
from server.services import Services
from tests.server.records_fixtures import telemed


def test_rotate_key_makes_a_600_key_keeps_the_old_public_key_and_is_audited(
    client: TestClient, services: Services
) -> None:
    key_file = services.settings.audit_key_file
    assert key_file is not None
    old_pem = key_file.read_bytes()
    old_id = audit_key_id(load_audit_key(key_file).public_key())

    code, out = telemed(services.settings, "audit", "rotate-key")

    assert code == 0, out
    assert key_file.read_bytes() != old_pem
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    new_id = audit_key_id(load_audit_key(key_file).public_key())
    assert out.splitlines()[:3] == [
        f"New audit key {new_id} in {key_file} (mode 600).",
        f"Retired audit key {old_id}: its private key was replaced; its checkpoints still verify.",
        f"Every audit public key (2, the new one last): {public_keys_path(key_file)}",
    ]
    assert "Signed a checkpoint with the new key." in out
    with Session(services.engine) as session:
        rotation = [e for e in iter_entries(session=session) if e.action == "audit.rotate_key"]
        checkpoint = latest_checkpoint(session=session)
    assert len(rotation) == 1 and rotation[0].outcome == "success"
    assert rotation[0].detail == {"old_key_id": old_id, "new_key_id": new_id}
    assert rotation[0].actor_id is not None and rotation[0].actor_id.startswith("cli:")
    assert checkpoint is not None and checkpoint.key_id == new_id
    assert checkpoint.tree_size >= rotation[0].seq


def test_rotate_key_refuses_a_key_file_that_does_not_load(client: TestClient, services: Services) -> None:
    key_file = services.settings.audit_key_file
    assert key_file is not None
    before = key_file.read_bytes()
    key_file.chmod(0o644)

    code, out = telemed(services.settings, "audit", "rotate-key")

    assert code == 1
    loose = "Audit key file audit-ed25519.pem is readable by others (mode 0o644); chmod 600 it"
    assert f"key_config_invalid: {loose}" in out
    assert key_file.read_bytes() == before and not public_keys_path(key_file).exists()
    assert "PRIVATE KEY" not in out

    key_file.unlink()
    code, out = telemed(services.settings, "audit", "rotate-key")
    assert code == 1 and f"key_config_invalid: Audit key file {key_file} does not exist" in out
    with Session(services.engine) as session:
        assert not [e for e in iter_entries(session=session) if e.action == "audit.rotate_key"]
