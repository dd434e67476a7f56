"""The kiosk browser: Chromium full screen on the room screen, started again if it ever exits.

It runs with a profile of its own (a fresh temporary directory: no history, no cookies from
elsewhere), plays sound without a click, and allows the camera and microphone without a prompt
(``--use-fake-ui-for-media-stream`` accepts the permission prompt with the default devices; it
fakes nothing else). Each start opens a new one-time launch URL, so a restarted browser gets a
new session and the old one ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from clinic_client.console.guard import Gate

log = logging.getLogger("telemed.room.browser")

KIOSK_ARGS = (
    "--kiosk",
    "--no-first-run",
    "--no-default-browser-check",
    "--noerrdialogs",
    "--disable-infobars",
    "--disable-session-crashed-bubble",
    "--disable-translate",
    "--disable-features=Translate",
    "--disable-pinch",
    "--overscroll-history-navigation=0",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(explicit: str | None = None) -> str | None:
    """The browser to run: ``explicit``, else ``TELEMED_CHROMIUM``, else Chromium/Chrome on PATH."""
    if explicit:
        return shutil.which(explicit)
    for name in (os.environ.get("TELEMED_CHROMIUM"), *CANDIDATES):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


class KioskBrowser:
    """Chromium in kiosk mode on the gate's launch URL; restarted after ``restart_s`` if it exits."""

    def __init__(self, binary: str, gate: Gate, *, restart_s: float = 2.0) -> None:
        self.binary = binary
        self.gate = gate
        self.restart_s = restart_s
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None

    def command(self, url: str, profile: Path) -> list[str]:
        """The command line for one start."""
        return [self.binary, *KIOSK_ARGS, f"--user-data-dir={profile}", url]

    async def run(self) -> None:
        """Keep the browser open until cancelled."""
        with tempfile.TemporaryDirectory(prefix="telemed-kiosk-") as profile:
            while True:
                url = self.gate.launch_url if self.starts == 0 else self.gate.new_launch_code()
                self.starts += 1
                try:
                    self._process = await asyncio.create_subprocess_exec(
                        *self.command(url, Path(profile)),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                    code = await self._process.wait()
                    log.warning("the kiosk browser exited (%s); starting it again", code)
                except OSError as exc:
                    log.error("cannot start the kiosk browser: %s", exc.strerror)
                finally:
                    await self._stop()
                await asyncio.sleep(self.restart_s)

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
