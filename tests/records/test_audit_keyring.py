"""Audit key rotation on disk: a new private key (600) replaces the old one, every public key is
kept, and a key ring in a running process follows the files without a restart, never falling back
to a key that was rotated out."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from records.audit.checkpoint import audit_key_id
from records.audit.keyring import AuditKeyRing, public_keys_path, rotate_audit_key
from records.audit.signing import create_audit_key, load_audit_key, load_public_keys, public_key_pem
from records.errors import KeyConfigError


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "audit-ed25519.pem"
    create_audit_key(path)
    return path


def _ids(path: Path) -> list[str]:
    return [audit_key_id(k) for k in load_public_keys(path.read_bytes())]


def test_rotation_replaces_the_private_key_and_keeps_every_public_key(key_file: Path) -> None:
    first = audit_key_id(load_audit_key(key_file).public_key())

    one = rotate_audit_key(key_file)
    two = rotate_audit_key(key_file)

    assert one.old_key_id == first and two.old_key_id == one.new_key_id
    assert audit_key_id(load_audit_key(key_file).public_key()) == two.new_key_id
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ring = public_keys_path(key_file)
    assert ring == key_file.parent / "audit-ed25519-public.pem" == two.public_keys_file
    assert _ids(ring) == [first, one.new_key_id, two.new_key_id] == list(two.key_ids)
    assert "PRIVATE" not in ring.read_text()
    # Nothing but the key and the public keys is left behind (no staged or retired private key).
    assert sorted(p.name for p in key_file.parent.iterdir()) == [
        "audit-ed25519-public.pem",
        "audit-ed25519.pem",
    ]


def test_rotation_refuses_a_key_file_that_does_not_load(tmp_path: Path, key_file: Path) -> None:
    with pytest.raises(KeyConfigError, match="does not exist"):
        rotate_audit_key(tmp_path / "missing.pem")
    key_file.chmod(0o644)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        rotate_audit_key(key_file)
    assert not public_keys_path(key_file).exists()


def test_a_running_key_ring_follows_a_rotation(key_file: Path) -> None:
    ring = AuditKeyRing(key_file)
    old = audit_key_id(ring.signer().public_key())
    assert list(ring.public_keys()) == [old]

    rotated = rotate_audit_key(key_file)

    assert audit_key_id(ring.signer().public_key()) == rotated.new_key_id
    assert list(ring.public_keys()) == [old, rotated.new_key_id]
    assert ring.snapshot()[0] == rotated.new_key_id


def test_a_changed_key_file_that_does_not_load_stops_signing(key_file: Path) -> None:
    ring = AuditKeyRing(key_file)
    ring.signer()
    rotate_audit_key(key_file)
    key_file.chmod(0o644)

    with pytest.raises(KeyConfigError, match="chmod 600"):
        ring.signer()  # never the key that was rotated out

    key_file.chmod(0o600)
    assert audit_key_id(ring.signer().public_key()) == _ids(public_keys_path(key_file))[-1]


def test_a_key_from_before_rotation_existed_is_its_own_ring(key_file: Path) -> None:
    ring = AuditKeyRing(key_file)
    only = audit_key_id(load_audit_key(key_file).public_key())
    assert not public_keys_path(key_file).exists()
    assert list(ring.public_keys()) == [only]
    # A public-key file without the current key (the key file was replaced by hand) still
    # verifies the current key's checkpoints.
    other = Ed25519PrivateKey.generate().public_key()
    public_keys_path(key_file).write_text(public_key_pem(other))
    assert list(ring.public_keys()) == [audit_key_id(other), only]


def test_the_witness_accepts_the_new_key_once_its_pinned_file_is_replaced(
    key_file: Path, tmp_path: Path
) -> None:
    from records.audit.checkpoint import sign_checkpoint
    from records.audit.merkle import merkle_root
    from records.audit.witness import AUDIT_PUBLIC_FILE, WitnessRefused, WitnessStore, witness_round

    store = WitnessStore(tmp_path / "witness")
    store.init(public_key_pem(load_audit_key(key_file)).encode())
    rotated = rotate_audit_key(key_file)
    leaf = "ab" * 32
    checkpoint = sign_checkpoint(
        tree_size=1, root_hash=merkle_root([leaf]), last_entry_hash=leaf, private_key=load_audit_key(key_file)
    )

    def no_proof(first: int, second: int) -> list[str]:
        raise AssertionError("no consistency proof is needed for the first checkpoint")

    with pytest.raises(WitnessRefused, match="not signed by the pinned audit key"):
        witness_round(store=store, checkpoint=checkpoint, proof_source=no_proof)

    (store.directory / AUDIT_PUBLIC_FILE).write_bytes(rotated.public_keys_file.read_bytes())
    result = witness_round(store=store, checkpoint=checkpoint, proof_source=no_proof)
    assert result.outcome == "cosigned" and result.cosignature is not None
    assert result.cosignature.checkpoint_key_id == rotated.new_key_id
