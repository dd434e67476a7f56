"""``telemed-client`` as a user runs it: a specialist joins and records; a room endpoint joins unattended."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import av
import httpx
import pytest

from clinic_client.call import read_frame_marker, synthetic_media
from clinic_client.session import ConsultationSession, SessionState, host_join_token, login
from device_policy.keys import save_private_key
from server.settings import Environment
from tests.server.factories import PASSWORD
from tests.support.loopback import fresh_video
from tests.support.signalling_scene import Scene, SceneFactory

pytestmark = pytest.mark.slow

HOST_TAG = 5
JOIN_TAG, ROOM_TAG = 1, 2  # what telemed-client join / room send with --media synthetic


async def run_client(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from clinic_client.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "160"},
    )


async def host_session(scene: Scene) -> ConsultationSession:
    url = scene.server.base_url
    access = await login(url, "doctor", PASSWORD)
    ticket = await host_join_token(url, access, scene.consultation_id)
    return await ConsultationSession.join(url, ticket.token, media=synthetic_media(source_tag=HOST_TAG))


def waiting(role: str):  # type: ignore[no-untyped-def]
    return lambda s: any(p.role == role and p.status == "waiting" for p in s.others)


def recorded_tags(path: Path) -> list[int]:
    """Source tags of the marked frames in a recording."""
    tags = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            marker = read_frame_marker(frame)
            if marker is not None:
                tags.append(marker.source_tag)
    return tags


async def test_a_specialist_joins_with_the_invite_link_and_records_the_host(
    make_scene: SceneFactory, tmp_path: Path
) -> None:
    scene = make_scene()
    host = await host_session(scene)
    try:
        access = await login(scene.server.base_url, "doctor", PASSWORD)
        async with httpx.AsyncClient() as http:
            resp = await http.post(
                f"{scene.server.base_url}/api/v1/consultations/{scene.consultation_id}/invites",
                headers={"Authorization": f"Bearer {access}"},
                json={"name": "Dr Specialist"},
            )
        link = resp.json()["link"]
        recording = tmp_path / "call.mkv"
        process = await run_client(
            "join", "--server", scene.server.base_url, "--invite", link,
            "--media", "synthetic", "--record", str(recording), "--duration", "8",
        )  # fmt: skip
        state: SessionState = await host.wait_until(waiting("specialist"), timeout=30)
        specialist = next(p for p in state.others if p.role == "specialist")
        await host.admit(specialist.id)
        await host.wait_until(lambda s: s.media_connected, timeout=30)
        assert host.call is not None
        await fresh_video(host.call, specialist.id, tag=JOIN_TAG, timeout=20)

        output, _ = await asyncio.wait_for(process.communicate(), 60)
        text = output.decode()
        assert process.returncode == 0, text
        assert "admitted" in text and "Dr Host" in text and "recording to" in text
        tags = recorded_tags(recording)
        assert len(tags) > 10 and set(tags) == {HOST_TAG}
    finally:
        await host.close()


async def test_a_room_endpoint_attests_joins_its_booking_and_leaves_when_it_ends(
    make_scene: SceneFactory, tmp_path: Path
) -> None:
    # Simulated posture is accepted by a development server only.
    scene = make_scene(environment=Environment.DEVELOPMENT)
    key_file = tmp_path / "device-key.pem"
    save_private_key(key_file, scene.room.key)
    process = await run_client(
        "room", "--server", scene.server.base_url, "--device-id", scene.room.id,
        "--key-file", str(key_file), "--posture-source", "simulated:compliant",
        "--media", "synthetic", "--once", "--poll", "1",
    )  # fmt: skip
    host = await host_session(scene)
    try:
        state = await host.wait_until(waiting("room"), timeout=30)
        room = next(p for p in state.others if p.role == "room")
        await host.admit(room.id)
        await host.wait_until(lambda s: s.media_connected, timeout=30)
        assert host.call is not None
        await fresh_video(host.call, room.id, tag=ROOM_TAG, timeout=20)
        await host.end("all done")
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        text = output.decode()
        assert process.returncode == 0, text
        assert "The consultation has ended (all done)." in text
    finally:
        await host.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
