"""Records through the agent: a grant it gets itself when the consultation is live, gone at the end."""

from __future__ import annotations

from tests.clinic_client.console.conftest import Clinic, Page, Socket, assert_no_secrets, open_bridge

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n" + bytes(range(256)) * 64


async def go_live(page: Page, clinic: Clinic) -> Socket:
    """Identity and consent through the agent, then join and start through the bridge."""
    cid = clinic.scene.consultation_id
    assert (await page.post(f"/api/consultations/{cid}/identity-check")).status_code == 200
    assert (await page.post(f"/api/consultations/{cid}/consent", json={})).status_code == 200
    socket = await open_bridge(page)
    await socket.send(type="join", consultation_id=cid)
    await socket.expect("welcome")
    await socket.send(type="start", id="go")
    assert (await socket.got("ack", ref="go"))["type"] == "ack"
    await socket.got("consultation.live")
    return socket


async def test_records_open_when_live_stream_no_store_take_notes_and_close_at_the_end(
    page: Page, clinic: Clinic
) -> None:
    document_id = clinic.import_document(PDF)
    cid = clinic.scene.consultation_id
    await page.ready()
    agent = page.thread.agent

    early = await page.get(f"/api/consultations/{cid}/records")
    assert early.status_code == 409
    assert early.json()["code"] == "not_live"
    assert agent.grants.held(cid) is None

    socket = await go_live(page, clinic)
    records = await page.get(f"/api/consultations/{cid}/records")
    assert records.status_code == 200, records.text
    body = records.json()
    assert body["patient"] == {
        "id": clinic.scene.patient_id,
        "name": "Ada Quillfeather",
        "prison_number": "A1234BC",
        "date_of_birth": "1980-02-03",
    }
    assert [d["id"] for d in body["documents"]] == [document_id]
    assert body["documents"][0]["content_type"] == "application/pdf"
    assert body["notes"] == []
    grant = agent.grants.held(cid)
    assert grant is not None, "the agent got a grant on first use"
    assert body["grant_expires_at"] == grant.expires_at.isoformat()

    content = await page.get(f"/api/consultations/{cid}/documents/{document_id}/content")
    assert content.status_code == 200
    assert content.content == PDF
    assert content.headers["content-type"] == "application/pdf"
    assert content.headers["cache-control"] == "no-store"
    assert content.headers["content-disposition"] == "inline"
    assert agent.grants.held(cid) is grant, "the same grant is used while it is fresh"

    note = await page.post(f"/api/consultations/{cid}/notes", json={"text": "Wound clean; dressing changed."})
    assert note.status_code == 201, note.text
    saved = note.json()
    assert saved["latest_version"] == 1 and saved["consultation_id"] == cid
    assert saved["versions"][-1]["text"] == "Wound clean; dressing changed."
    amended = await page.post(
        f"/api/consultations/{cid}/notes/{saved['id']}/versions",
        json={"text": "Wound clean; dressing changed; review in a week.", "base_version": 1},
    )
    assert amended.status_code == 201 and amended.json()["latest_version"] == 2
    stale = await page.post(
        f"/api/consultations/{cid}/notes/{saved['id']}/versions",
        json={"text": "older edit", "base_version": 1},
    )
    assert stale.status_code == 409 and stale.json()["code"] == "version_conflict"
    listed = (await page.get(f"/api/consultations/{cid}/records")).json()
    assert [n["latest_version"] for n in listed["notes"]] == [2]

    await socket.send(type="end", id="bye", reason="consultation complete")
    await socket.got("consultation.ended")
    await socket.expect("agent.closed")
    assert agent.grants.held(cid) is None, "the grant is dropped when the consultation ends"

    for response in (
        await page.get(f"/api/consultations/{cid}/records"),
        await page.get(f"/api/consultations/{cid}/documents/{document_id}/content"),
        await page.post(f"/api/consultations/{cid}/notes", json={"text": "too late"}),
    ):
        assert response.status_code == 410, response.request.url
        assert response.json()["code"] == "consultation_ended"
        assert PDF[:8] not in response.content
    assert_no_secrets(clinic, grant.token)


async def test_a_grant_the_server_has_revoked_is_dropped_and_the_page_told_the_consultation_ended(
    page: Page, clinic: Clinic
) -> None:
    document_id = clinic.import_document(b"plain text letter", "text/plain")
    cid = clinic.scene.consultation_id
    await page.ready()
    socket = await go_live(page, clinic)
    assert (await page.get(f"/api/consultations/{cid}/records")).status_code == 200
    grant = page.thread.agent.grants.held(cid)
    assert grant is not None
    # The consultation ends elsewhere (the REST end, by the same host); the bridge hears of it,
    # but here the page closed its socket first, so the agent still holds the grant.
    await socket.ws.close()
    with clinic.server_http("doctor") as http:
        ended = http.post(f"/api/v1/consultations/{cid}/end", json={"reason": "ended elsewhere"})
        assert ended.status_code == 200, ended.text
    refused = await page.get(f"/api/consultations/{cid}/documents/{document_id}/content")
    assert refused.status_code == 410
    assert refused.json()["code"] == "consultation_ended"
    assert page.thread.agent.grants.held(cid) is None
    assert_no_secrets(clinic, grant.token)
