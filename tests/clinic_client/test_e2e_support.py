"""The end-to-end test support works: the room endpoint (tests/support/room_endpoint.py) waits for
its booking, is admitted and counts live video from the host; the PDF maker
(tests/support/documents.py) writes a valid PDF, its checker catches damage, and the import
stores exactly the bytes made."""

from __future__ import annotations

import re
import shutil

import httpx
import pytest

from clinic_client.call import synthetic_media
from clinic_client.session import ConsultationSession
from records.documents import open_sealed
from records.models import Document
from server.db import session_scope
from server.devices.models import DeviceKind
from server.identity.models import Role
from server.settings import Environment
from tests.server.factories import PASSWORD, add_user
from tests.support.documents import (
    DEFAULT_LINES,
    DEFAULT_TITLE,
    PDF_TYPE,
    InvalidPdf,
    check_pdf,
    check_pdf_structure,
    import_pdf,
    pdf_with_text,
)
from tests.support.loopback import eventually, fresh_video
from tests.support.room_endpoint import ROOM_TAG, RoomFactory, room_endpoints
from tests.support.services import IN_CI
from tests.support.signalling_scene import SceneFactory, enrol_device

__all__ = ["room_endpoints"]  # the fixture, for the tests here

HOST_TAG = 1


def test_the_pdf_is_valid_and_reads_back_its_text() -> None:
    lines = ["Wound (left forearm) healing \\ no infection", "Review in £0 clinic, 2 weeks"]
    content = pdf_with_text(lines, title="Clinic letter")
    checked = check_pdf(content, expect_text=["Clinic letter", *lines])
    # CI installs poppler-utils (.ci/run): there the page is really rendered.
    if IN_CI:
        assert checked == "pdftoppm"
    assert checked in {"pdftoppm", "structure"}


def test_the_pdf_checker_catches_damage() -> None:
    content = pdf_with_text()
    check_pdf_structure(content)
    # Damage of the same size, so everything else stays where it was.
    length = int(re.search(rb"/Length (\d+)", content).group(1))  # type: ignore[union-attr]
    wrong = length - 1 if length % 10 else length + 1
    wrong_length = content.replace(f"/Length {length}".encode(), f"/Length {wrong}".encode())
    with pytest.raises(InvalidPdf, match="is not /Length"):
        check_pdf_structure(wrong_length)
    offset = content.index(b"3 0 obj")
    moved = content.replace(f"{offset:010d} 00000 n".encode(), f"{offset + 1:010d} 00000 n".encode())
    with pytest.raises(InvalidPdf, match="xref entry 3 points at byte"):
        check_pdf_structure(moved)
    with pytest.raises(InvalidPdf, match="no %%EOF"):
        check_pdf_structure(content.rstrip()[:-5])
    with pytest.raises(InvalidPdf, match="header"):
        check_pdf_structure(b"%PDX" + content[4:])
    with pytest.raises(ValueError, match="Windows-1252"):
        pdf_with_text(["\u2603 snowman"])


def test_the_renderer_sees_a_blank_page() -> None:
    # Structurally valid, but nothing on the page: only rendering it can tell.
    blank = pdf_with_text([], title="")
    check_pdf_structure(blank)
    if shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None:
        if IN_CI:
            pytest.fail("poppler-utils (pdftoppm) is required under CI=true", pytrace=False)
        pytest.skip("poppler-utils (pdftoppm) not installed")
    with pytest.raises(InvalidPdf, match="blank"):
        check_pdf(blank)


@pytest.mark.slow
async def test_the_room_waits_for_its_booking_is_admitted_and_counts_the_hosts_video(
    make_scene: SceneFactory, room_endpoints: RoomFactory
) -> None:
    scene = make_scene(environment=Environment.DEVELOPMENT)  # simulated posture is accepted
    enrolled = enrol_device(scene.services, "room-02", DeviceKind.ROOM_ENDPOINT)
    room = await room_endpoints(scene.server.base_url, enrolled)  # starts asking: nothing booked yet
    await eventually(
        lambda: room.not_booked_answers >= 2, timeout=20, message="the room did not ask for its booking"
    )
    assert room.session is None

    consultation_id = scene.book(room=enrolled)
    ticket = await room.wait_joined()
    assert ticket.consultation_id == consultation_id
    assert ticket.role == "room"
    await room.wait_waiting()
    # The server took the simulated compliant posture.
    assert room.agent.current is not None

    media = synthetic_media(source_tag=HOST_TAG)
    host = await ConsultationSession.join(
        scene.server.base_url, scene.host_token(consultation_id), media=media
    )
    try:
        await host.wait_until(
            lambda s: any(p.id == room.participant_id and p.status == "waiting" for p in s.others)
        )
        assert room.state.status == "waiting"  # nobody is let in before the host says so
        assert room.video_frames_from() == 0

        await host.admit(room.participant_id)
        await room.wait_admitted()
        await room.wait_media_connected()
        host_id = host.state.participant_id
        assert room.host_id() == host_id

        # Live video from the host, decoded by the room: the count keeps rising…
        seen = await room.wait_for_video(frames=10)
        assert seen >= 10
        frame = room.latest_video_frame()
        assert frame is not None and frame.width > 0 and frame.height > 0
        # …and the frames are the host's (its mark), with a counter that moves on.
        assert room.session is not None and room.session.call is not None
        await fresh_video(room.session.call, host_id or "", tag=HOST_TAG, timeout=20)
        # The host sees the room's marked video too: media both ways.
        assert host.call is not None
        await fresh_video(host.call, room.participant_id, tag=ROOM_TAG, timeout=20)

        # The host hangs up; what the room received still counts.
        await host.leave()
        await room.wait_until(lambda s: not s.media)
        assert room.video_frames_from(host_id) >= seen
    finally:
        await host.close()
        media.stop()


async def test_a_pdf_is_imported_for_a_patient_byte_for_byte(make_scene: SceneFactory) -> None:
    scene = make_scene()
    add_user(scene.services, "root", role=Role.ADMIN, display_name="Admin Root")
    async with httpx.AsyncClient(base_url=scene.server.base_url, timeout=10) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
        assert login.status_code == 200, login.text
        admin_token = login.json()["access_token"]

        document = await import_pdf(scene.server.base_url, admin_token, scene.patient_id)
        assert document.title == DEFAULT_TITLE and document.lines == DEFAULT_LINES

    # What the server stored (encrypted at rest) decrypts to exactly the bytes made.
    runtime = scene.services.records
    assert runtime is not None
    with session_scope(scene.services.engine) as session:
        stored = session.get(Document, document.id)
        assert stored is not None
        assert stored.patient_id == scene.patient_id and stored.content_type == PDF_TYPE
        with open_sealed(vault=runtime.vault, document=stored) as plaintext:
            assert b"".join(plaintext) == document.content
