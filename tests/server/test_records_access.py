"""Reading documents, writing notes, sharing with a specialist — and "not found" meaning "not for you".

Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from server.services import Services
from tests.server.records_fixtures import MARKER, Ward, build_ward, problem


@pytest.fixture
def ward(client: TestClient, services: Services) -> Ward:
    return build_ward(client, services)


def _same(*responses: object) -> None:
    first = responses[0]
    for other in responses[1:]:
        assert other.status_code == first.status_code == 404  # type: ignore[attr-defined]
        assert problem(other) == problem(first)  # type: ignore[arg-type]
    assert problem(first)["code"] == "not_found"  # type: ignore[arg-type]


def test_the_host_reads_a_document_it_was_imported_as(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    meta = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", grant)
    assert meta.status_code == 200
    expected = b"Letter for A. " + MARKER
    body = meta.json()
    assert body["sha256"] == hashlib.sha256(expected).hexdigest() and body["size"] == len(expected)
    assert body["content_type"] == "text/plain" and body["title"] == "Discharge letter"
    assert "blob_id" not in body and "wrapped_key" not in body
    content = ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}/content", grant)
    assert content.status_code == 200 and content.content == expected
    assert content.headers["cache-control"] == "no-store"
    reads = ward.audit(action="document.read", outcome="allowed")
    assert [e["data"]["document_ids"] for e in reads] == [[ward.doc_a]]


def test_missing_and_forbidden_documents_answer_the_same(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    for suffix in ("", "/content"):
        _same(
            ward.use("GET", f"/api/v1/records/documents/{ward.doc_b}{suffix}", grant),
            ward.use("GET", f"/api/v1/records/documents/0123456789abcdef0123456789abcdef{suffix}", grant),
            ward.use("GET", f"/api/v1/records/documents/not-even-an-id{suffix}", grant),
        )
    _same(
        ward.use("GET", f"/api/v1/records/patients/{ward.patient_b}/documents", grant),
        ward.use("GET", "/api/v1/records/patients/nobody/documents", grant),
        ward.use("GET", f"/api/v1/records/patients/{ward.patient_b}", grant),
        ward.use("GET", "/api/v1/records/patients/nobody", grant),
        ward.use("GET", f"/api/v1/records/patients/{ward.patient_b}/notes", grant),
    )
    denied = ward.audit(action="document.read", outcome="denied")
    assert {e["data"]["document_ids"][0] for e in denied} >= {ward.doc_b, "not-even-an-id"}


def test_missing_and_forbidden_notes_answer_the_same(ward: Ward) -> None:
    # A note of patient B, written in B's own consultation by the other clinician.
    cid_b = ward.book(ward.patient_b, host_id=ward.nurse_id)
    ward.go_live(cid_b, host_id=ward.nurse_id)
    path = "/api/v1/records/grants"
    nurse_grant = ward.client.post(
        path, json={"consultation_id": cid_b}, headers={**ward.nurse, **ward.laptop2.posture("POST", path)}
    ).json()["grant"]
    note_b = ward.use(
        "POST",
        "/api/v1/records/notes",
        nurse_grant,
        device=ward.laptop2,
        headers=ward.nurse,
        json={"text": "B's note"},
    )
    assert note_b.status_code == 201, note_b.text
    grant = ward.grant()["grant"]
    mine = ward.use("POST", "/api/v1/records/notes", grant, json={"text": "A's note"}).json()["id"]
    note_id = note_b.json()["id"]
    _same(
        ward.use("GET", f"/api/v1/records/notes/{note_id}", grant),
        ward.use("GET", "/api/v1/records/notes/0123456789abcdef0123456789abcdef", grant),
    )
    _same(
        ward.use(
            "POST", f"/api/v1/records/notes/{note_id}/versions", grant, json={"text": "x", "base_version": 1}
        ),
        ward.use("POST", "/api/v1/records/notes/nope/versions", grant, json={"text": "x", "base_version": 1}),
    )
    # The other clinician, with a grant for the same patient A, may read but not edit my note.
    ward.end(cid_b, headers=ward.nurse)
    cid_a2 = ward.book(ward.patient_a, host_id=ward.nurse_id)
    ward.go_live(cid_a2, host_id=ward.nurse_id)
    nurse_a = ward.client.post(
        path, json={"consultation_id": cid_a2}, headers={**ward.nurse, **ward.laptop2.posture("POST", path)}
    ).json()["grant"]
    read = ward.use("GET", f"/api/v1/records/notes/{mine}", nurse_a, device=ward.laptop2, headers=ward.nurse)
    assert read.status_code == 200
    _same(
        ward.use(
            "POST",
            f"/api/v1/records/notes/{mine}/versions",
            nurse_a,
            device=ward.laptop2,
            headers=ward.nurse,
            json={"text": "not mine", "base_version": 1},
        ),
        ward.use(
            "POST",
            "/api/v1/records/notes/0123456789abcdef0123456789abcdef/versions",
            nurse_a,
            device=ward.laptop2,
            headers=ward.nurse,
            json={"text": "not mine", "base_version": 1},
        ),
    )


def test_notes_keep_every_version(ward: Ward) -> None:
    grant = ward.grant()["grant"]
    created = ward.use("POST", "/api/v1/records/notes", grant, json={"text": "Seen today. BP 120/80."})
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["latest_version"] == 1 and note["consultation_id"] == ward.consultation
    path = f"/api/v1/records/notes/{note['id']}/versions"
    second = ward.use(
        "POST", path, grant, json={"text": "Seen today. BP 125/80 (corrected).", "base_version": 1}
    )
    assert second.status_code == 201, second.text
    stale = ward.use("POST", path, grant, json={"text": "lost edit", "base_version": 1})
    assert stale.status_code == 409 and stale.json()["code"] == "version_conflict"
    history = ward.use("GET", f"/api/v1/records/notes/{note['id']}", grant).json()
    assert [(v["version"], v["text"]) for v in history["versions"]] == [
        (1, "Seen today. BP 120/80."),
        (2, "Seen today. BP 125/80 (corrected)."),
    ]
    listed = ward.use("GET", f"/api/v1/records/patients/{ward.patient_a}/notes", grant).json()
    assert [n["latest_version"] for n in listed] == [2]
    actions = [e["action"] for e in ward.audit(category="note", outcome="allowed", sort="seq")]
    assert actions == ["note.create", "note.update", "note.read", "note.list"]


def test_the_specialist_sees_only_what_the_host_shared_in_the_call(ward: Ward) -> None:
    participant, join = ward.specialist_join_token(ward.consultation)
    specialist = {"Authorization": f"Bearer {join}"}
    assert ward.client.get("/api/v1/records/shared", headers=specialist).json() == []
    grant = ward.grant()["grant"]
    share = {"consultation_id": ward.consultation, "document_id": ward.doc_a, "participant_id": participant}
    made = ward.use("POST", "/api/v1/records/shares", grant, json=share)
    assert made.status_code == 201, made.text
    shared = ward.client.get("/api/v1/records/shared", headers=specialist).json()
    assert [d["id"] for d in shared] == [ward.doc_a]
    content = ward.client.get(f"/api/v1/records/shared/{ward.doc_a}/content", headers=specialist)
    assert content.status_code == 200 and content.content.endswith(MARKER)
    _same(
        ward.client.get(f"/api/v1/records/shared/{ward.doc_a2}/content", headers=specialist),
        ward.client.get(f"/api/v1/records/shared/{ward.doc_b}/content", headers=specialist),
        ward.client.get("/api/v1/records/shared/nothing/content", headers=specialist),
    )
    # Patient B's document, a stranger participant, another consultation: all "not found".
    _same(
        ward.use("POST", "/api/v1/records/shares", grant, json={**share, "document_id": ward.doc_b}),
        ward.use(
            "POST", "/api/v1/records/shares", grant, json={**share, "participant_id": "specialist:stranger"}
        ),
        ward.use("POST", "/api/v1/records/shares", grant, json={**share, "consultation_id": "other"}),
    )
    # The specialist's join token is no record grant, and the specialist has no grant of their own.
    assert ward.use("GET", f"/api/v1/records/documents/{ward.doc_a}", join).json()["code"] == "wrong_audience"
    ward.end(ward.consultation)
    after = ward.client.get(f"/api/v1/records/shared/{ward.doc_a}/content", headers=specialist)
    assert after.status_code == 404
    assert ward.client.get("/api/v1/records/shared", headers=specialist).json() == []
    forged = ward.client.get("/api/v1/records/shared", headers={"Authorization": f"Bearer {join[:-4]}AAAA"})
    assert forged.status_code == 401 and forged.json()["code"] == "grant_invalid"
    assert [e["outcome"] for e in ward.audit(action="share.access")] == ["denied"]
    reads = ward.audit(action="document.read", actor_id=participant, sort="seq")
    assert [(e["outcome"], e["data"]["document_ids"][0]) for e in reads] == [
        ("allowed", ward.doc_a),
        ("denied", ward.doc_a2),
        ("denied", ward.doc_b),
        ("denied", "nothing"),
        ("denied", ward.doc_a),
    ]
    assert all(e["actor_role"] == "specialist" and e["authority_jti"] for e in reads)


def test_only_admins_import_and_register(ward: Ward) -> None:
    path = f"/api/v1/records/patients/{ward.patient_a}/documents"
    params = {"doc_type": "letter", "title": "x", "document_date": "2026-01-01"}
    resp = ward.client.post(path, params=params, content=b"data", headers=ward.host)
    assert resp.status_code == 403 and resp.json()["code"] == "access_denied"
    unknown = ward.client.post(
        "/api/v1/records/patients/nobody/documents", params=params, content=b"data", headers=ward.admin
    )
    assert unknown.status_code == 404
    bad = ward.client.post(
        path, params={**params, "doc_type": "Not A Type"}, content=b"x", headers=ward.admin
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_document"
    dup = ward.client.post(
        "/api/v1/patients",
        json={"prison_number": "a1234bc", "name": "X", "date_of_birth": "1990-01-01", "establishment": "HMP"},
        headers=ward.admin,
    )
    assert dup.status_code == 409 and dup.json()["code"] == "already_exists"


def test_patient_lookup_by_prison_number_for_staff(ward: Ward) -> None:
    found = ward.client.get("/api/v1/patients/lookup", params={"prison_number": "a1234bc"}, headers=ward.host)
    assert found.status_code == 200 and found.json()["id"] == ward.patient_a
    _same(
        ward.client.get(
            "/api/v1/patients/lookup", params={"prison_number": "A1234BC"}, headers=ward.specialist_user
        ),
        ward.client.get("/api/v1/patients/lookup", params={"prison_number": "Z0000ZZ"}, headers=ward.host),
    )


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(
    client: TestClient, services: Services, ward: Ward
) -> None:
    limit = services.settings.records_max_document_bytes
    services.settings.records_max_document_bytes = 1024
    try:
        resp = ward.client.post(
            f"/api/v1/records/patients/{ward.patient_a}/documents",
            params={"doc_type": "scan", "title": "Big", "document_date": "2026-01-01"},
            content=b"x" * 5000,
            headers=ward.admin,
        )
    finally:
        services.settings.records_max_document_bytes = limit
    assert resp.status_code == 413 and resp.json()["code"] == "document_too_large"
    blobs = [p for p in (services.settings.data_dir / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 3  # the three documents of the ward, no partial upload
    failures = ward.audit(action="document.import", outcome="failure")
    assert [e["detail"]["reason"] for e in failures] == ["document_too_large"]
