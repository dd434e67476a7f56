"""``telemed-client room --kiosk`` as a room endpoint starts it, and the kiosk browser it keeps open."""

from __future__ import annotations

import asyncio
import re
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from clinic_client.room import room_gate
from clinic_client.room.browser import KIOSK_ARGS, KioskBrowser, find_browser
from clinic_client.room.cli import LAUNCH_LINE_PREFIX
from device_policy.keys import save_private_key
from tests.clinic_client.room.conftest import Room, open_screen
from tests.support.console_agent import AgentProcess, ConsolePage
from tests.support.loopback import eventually


class RoomProcess(AgentProcess):
    """``telemed-client room --kiosk`` in a child process; ``launch_url`` from its output."""

    launch_re = re.compile(re.escape(LAUNCH_LINE_PREFIX) + r"(http://127\.0\.0\.1:(\d+)/launch/\S+)")

    def __init__(
        self, server_url: str, device_id: str, key_file: Path, *, workdir: Path, browser: str | None = None
    ) -> None:
        super().__init__(
            server_url,
            device_id,
            key_file,
            simulate=None,
            workdir=workdir,
            extra_args=["--posture-source", "simulated:compliant", "--poll", "0.3"],
        )
        # The console's command line, as the room's: `room --kiosk` with its own posture option.
        self.args[self.args.index("console")] = "room"
        self.args.insert(self.args.index("room") + 1, "--kiosk")
        if browser is not None:
            self.args.remove("--no-browser")
            self.args += ["--browser", browser]


@pytest.mark.slow
async def test_the_command_prints_a_launch_url_and_the_screen_follows_the_booking(
    room: Room, tmp_path: Path
) -> None:
    key_file = save_private_key(tmp_path / "room-key.pem", room.device.key)
    # No browser to be found: the agent says so and prints the URL, as with --no-browser.
    with RoomProcess(
        room.server_url, room.device.id, key_file, workdir=tmp_path / "agent", browser="no-such-browser"
    ) as running:
        assert running.launch_url.startswith(f"http://127.0.0.1:{running.port}/launch/")
        async with ConsolePage(running) as page:
            assert (await page.get(running.launch_url)).status_code == 403  # used once already
            screen = await open_screen(page, room)
            await screen.screen("idle")
            room.book()
            booked = await screen.screen("booked")
            assert booked["clinician"] == "Dr Host"
            await screen.close()
        with httpx.Client() as other:
            refused = other.get(
                f"http://127.0.0.1:{running.port}/api/state", headers={"Host": f"localhost:{running.port}"}
            )
            assert refused.status_code == 421
    logs = running.logs()
    assert "No browser found (no-such-browser)" in logs
    assert "eyJ" not in logs  # no JWT (join, posture token) in what the agent wrote


def test_a_missing_device_key_is_a_usage_error(tmp_path: Path) -> None:
    command = RoomProcess("http://127.0.0.1:9", "room-01", tmp_path / "missing.pem", workdir=tmp_path)
    result = subprocess.run(command.args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Cannot use the device key" in result.stderr


def fake_browser(tmp_path: Path) -> tuple[Path, Path]:
    """A "browser" that writes its command line to a file and exits at once (a crash)."""
    log = tmp_path / "browser.log"
    script = tmp_path / "fake-chromium"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


async def test_the_kiosk_browser_is_started_again_with_a_new_launch_code(tmp_path: Path) -> None:
    script, log = fake_browser(tmp_path)
    gate = room_gate(48125)
    first_url = gate.launch_url
    browser = KioskBrowser(str(script), gate, restart_s=0.05)
    task = asyncio.create_task(browser.run())
    try:
        await eventually(
            lambda: log.exists() and len(log.read_text().splitlines()) >= 2,
            timeout=10,
            message="the browser was not started again",
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    first, second = log.read_text().splitlines()[:2]
    for line in (first, second):
        args = line.split()
        assert all(flag in args for flag in KIOSK_ARGS)
        assert any(a.startswith("--user-data-dir=") for a in args)
    assert first.split()[-1] == first_url
    second_url = second.split()[-1]
    assert second_url != first_url and second_url.startswith(gate.origin + "/launch/")
    # The first browser's code is dead; the new one opens the screen.
    with pytest.raises(Exception, match="not valid"):
        gate.redeem(first_url.rsplit("/", 1)[1])
    assert gate.redeem(second_url.rsplit("/", 1)[1])


def test_the_browser_is_found_or_not(tmp_path: Path) -> None:
    script, _ = fake_browser(tmp_path)
    assert find_browser(str(script)) == str(script)
    assert find_browser("no-such-browser") is None
