"""Records keys fail closed: explicit outside development, created only where nothing depends on them,
mode 600, and ``telemed keys rotate-kek`` re-wraps every stored key — on both databases."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from records.errors import KeyConfigError
from records.models import Document, NoteVersion
from server.app import create_app
from server.db import make_engine
from server.records_runtime import key_paths, load_vault
from server.services import Services
from server.settings import Environment
from tests.conftest import make_settings
from tests.server.records_fixtures import MARKER, Ward, build_ward, telemed


def _blobs(services: Services) -> dict[Path, bytes]:
    """Every stored file under the blob store, by path."""
    root = services.settings.data_dir / "blobs"
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sealed(services: Services) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Note ciphertexts, and the wrapped data keys of documents and note versions, by row id."""
    with Session(services.engine) as session:
        documents = session.exec(select(Document)).all()
        versions = session.exec(select(NoteVersion)).all()
        ciphertexts = {v.id: bytes(v.ciphertext) for v in versions}
        wrapped = {row.id: bytes(row.wrapped_key) for row in (*documents, *versions)}
    return ciphertexts, wrapped


@pytest.fixture
def ward(client: TestClient, services: Services) -> Ward:
    return build_ward(client, services)


def test_outside_development_the_key_locations_must_be_given(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path / "data", records_kek_dir=None, audit_key_file=None)
    with pytest.raises(KeyConfigError, match="TELEMED_RECORDS_KEK_DIR"):
        key_paths(settings)
    services = Services.build(settings)
    try:
        with pytest.raises(KeyConfigError), TestClient(create_app(settings, services=services)):
            pass
    finally:
        services.engine.dispose()


def test_development_keys_are_created_under_the_data_dir_with_mode_600(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        db_url,
        tmp_path / "data",
        environment=Environment.DEVELOPMENT,
        records_kek_dir=None,
        audit_key_file=None,
    )
    engine = make_engine(db_url)
    try:
        load_vault(settings, engine)
    finally:
        engine.dispose()
    kek = settings.data_dir / "keys" / "records" / "kek-1.key"
    audit = settings.data_dir / "keys" / "audit-ed25519.pem"
    for path in (kek, audit):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(kek.parent.stat().st_mode) == 0o700


def test_keys_are_never_recreated_under_stored_data(ward: Ward, services: Services) -> None:
    assert services.settings.records_kek_dir is not None and services.settings.audit_key_file is not None
    for path in services.settings.records_kek_dir.iterdir():
        path.unlink()
    with pytest.raises(KeyConfigError, match="holds no keys"):
        load_vault(services.settings, services.engine)
    assert list(services.settings.records_kek_dir.iterdir()) == []


def test_a_loose_key_file_is_refused(ward: Ward, services: Services) -> None:
    assert services.settings.audit_key_file is not None
    services.settings.audit_key_file.chmod(0o644)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        load_vault(services.settings, services.engine)


def test_rotate_kek_rewraps_every_key_and_everything_still_reads(ward: Ward, services: Services) -> None:
    grant = ward.grant()["grant"]
    note = ward.use("POST", "/api/v1/records/notes", grant, json={"text": "before rotation"}).json()
    blobs_before = _blobs(services)
    notes_before, keys_before = _sealed(services)
    code, out = telemed(services.settings, "keys", "rotate-kek")
    assert code == 0, out
    assert "version 2" in out and "re-wrapped 3 document and 1 note keys" in out
    with Session(services.engine) as session:
        assert {d.kek_version for d in session.exec(select(Document)).all()} == {2}
        assert {v.kek_version for v in session.exec(select(NoteVersion)).all()} == {2}
    # Re-wrapped, not re-encrypted: every file and note ciphertext is byte for byte the same.
    assert len(blobs_before) == 3 and _blobs(services) == blobs_before
    notes_after, keys_after = _sealed(services)
    assert notes_after == notes_before
    assert keys_after.keys() == keys_before.keys()
    assert all(keys_after[row] != keys_before[row] for row in keys_before)
    # A fresh process with the rotated keys reads old files and notes.
    settings = make_settings(str(services.settings.database_url), services.settings.data_dir)
    fresh = Services.build(settings)
    try:
        with TestClient(create_app(settings, services=fresh)) as client:
            ward.client = client
            grant = ward.grant()["grant"]
            content = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}/content", grant)
            assert content.status_code == 200 and content.content.endswith(MARKER)
            history = ward.use("GET", f"/api/v1/records/notes/{note['id']}", grant).json()
            assert history["versions"][0]["text"] == "before rotation"
            rotations = ward.audit(action="keys.rotate_kek")
            assert [e["detail"]["kek_version"] for e in rotations] == [2]
    finally:
        fresh.engine.dispose()


def test_a_running_server_follows_rotate_kek_without_a_restart(ward: Ward, services: Services) -> None:
    grant = ward.grant()["grant"]
    code, out = telemed(services.settings, "keys", "rotate-kek")
    assert code == 0, out
    # The same process, never restarted: the keys it knew were re-wrapped under version 2.
    content = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}/content", grant)
    assert content.status_code == 200, content.text
    assert content.content.endswith(MARKER)
    # What it writes now is wrapped under the new version.
    note = ward.use("POST", "/api/v1/records/notes", grant, json={"text": "after rotation"})
    assert note.status_code == 201, note.text
    with Session(services.engine) as session:
        assert {v.kek_version for v in session.exec(select(NoteVersion)).all()} == {2}
    again = ward.use("GET", f"/api/v1/records/notes/{note.json()['id']}", grant)
    assert again.json()["versions"][0]["text"] == "after rotation"


def test_a_half_written_key_file_keeps_the_keys_already_loaded(ward: Ward, services: Services) -> None:
    grant = ward.grant()["grant"]
    kek_dir, _audit = key_paths(services.settings)
    partial = kek_dir / "kek-2.key"
    partial.write_bytes(b"")  # the moment between create and write
    partial.chmod(0o600)
    content = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}/content", grant)
    assert content.status_code == 200, content.text
    note = ward.use("POST", "/api/v1/records/notes", grant, json={"text": "still version 1"})
    assert note.status_code == 201, note.text
    with Session(services.engine) as session:
        assert {v.kek_version for v in session.exec(select(NoteVersion)).all()} == {1}
