"""No plaintext at rest: a distinctive marker imported (API and CLI), written in a note and read back
appears nowhere under the data directory, nowhere in the database, and in no log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from server.models import metadata
from server.services import Services
from tests.server.records_fixtures import MARKER, Ward, build_ward, telemed

NOTE_MARKER = b"QUOKKA-NOTE-MARKER-55c2"
CLI_MARKER = b"NARWHAL-CLI-MARKER-91ab"


@pytest.fixture
def ward(client: TestClient, services: Services) -> Ward:
    return build_ward(client, services)


def _hits(haystack: bytes) -> list[bytes]:
    found = []
    for marker in (MARKER, NOTE_MARKER, CLI_MARKER):
        # Raw, as UTF-16 (SQLite may store text so) and as the hex a bytea dump prints.
        for form in (marker, marker.decode().encode("utf-16-le"), marker.hex().encode()):
            if form in haystack:
                found.append(marker)
    return found


def _database_dump(services: Services) -> bytes:
    """Every row of every table, as text (PostgreSQL) or the raw database files (SQLite)."""
    url = str(services.settings.database_url)
    if url.startswith("sqlite"):
        db = Path(url.split("///", 1)[1])
        return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    dump = []
    with services.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(text(f'SELECT row_to_json(t)::text FROM "{table.name}" t')).scalars()  # noqa: S608
            dump.extend(row.encode() for row in rows)
    return b"\n".join(dump)


def test_no_marker_anywhere_at_rest(
    ward: Ward, services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    incoming = tmp_path / "incoming"  # outside the data directory: where the admin's file came from
    incoming.mkdir()
    source = incoming / "scan.txt"
    source.write_bytes(b"Scanned result. " + CLI_MARKER * 100)
    code, out = telemed(services.settings, "records", "import", "--patient", "A1234BC", "--type", "result",
                        "--title", "Blood result", "--content-type", "text/plain", str(source))  # fmt: skip
    assert code == 0, out

    grant = ward.grant()["grant"]
    note = ward.use("POST", "/api/v1/records/notes", grant, json={"text": "Plan: " + NOTE_MARKER.decode()})
    assert note.status_code == 201
    docs = ward.use("GET", f"/api/v1/records/patients/{ward.patient_a}/documents", grant).json()
    contents = b"".join(
        ward.use("GET", f"/api/v1/records/documents/{d['id']}/content", grant).content for d in docs
    )
    history = ward.use("GET", f"/api/v1/records/notes/{note.json()['id']}", grant).json()
    # The markers really went in and come back out to the grant holder...
    assert MARKER in contents and CLI_MARKER in contents
    assert NOTE_MARKER.decode() in history["versions"][0]["text"]

    # ...and are nowhere at rest.
    files = [p for p in services.settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.parent.parent.name == "blobs" for p in files)
    for path in files:
        assert _hits(path.read_bytes()) == [], path
    assert _hits(_database_dump(services)) == []
    assert _hits(caplog.text.encode()) == []
