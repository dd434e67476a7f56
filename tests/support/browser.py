"""Real Chromium for tests, driven by Playwright, with a fake camera and microphone.

Debian's ``/usr/bin/chromium`` (or ``TELEMED_CHROMIUM``) is launched through Playwright's
``executable_path``; Playwright's own browser downloads are never used. Under ``CI=true``
a missing Chromium fails the test; elsewhere it skips.

Use ``chromium`` (a launched browser) or ``open_page`` (a fresh context and page that
records console errors and uncaught exceptions, see :class:`PageWatch`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, async_playwright

from tests.support.services import service_missing

CHROMIUM_ARGS = (
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# Chromium's fake permission prompt answers "Block" instead of "Allow" with this value.
DENY_MEDIA_ARG = "--use-fake-ui-for-media-stream=deny"


def chromium_binary() -> str | None:
    """Debian's Chromium, from TELEMED_CHROMIUM, PATH or /usr/bin."""
    explicit = os.environ.get("TELEMED_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def require_chromium() -> str:
    """The Chromium binary, or fail (CI) / skip (developer machine) the calling test."""
    binary = chromium_binary()
    if binary is None:
        service_missing("Chromium (/usr/bin/chromium)")
        raise AssertionError("unreachable")  # service_missing always raises
    return binary


@asynccontextmanager
async def launched_chromium(*, deny_media: bool = False) -> AsyncIterator[Browser]:
    """A headless Chromium with fake media devices (camera permission refused if deny_media)."""
    binary = require_chromium()
    args = [a for a in CHROMIUM_ARGS if not (deny_media and a == "--use-fake-ui-for-media-stream")]
    if deny_media:
        args.append(DENY_MEDIA_ARG)
    async with async_playwright() as playwright:
        browser = await _launch(playwright, binary, args)
        try:
            yield browser
        finally:
            await browser.close()


async def _launch(playwright: Playwright, binary: str, args: list[str]) -> Browser:
    return await playwright.chromium.launch(executable_path=binary, args=args, headless=True)


@dataclass
class PageWatch:
    """What a page said that a user would not see: console errors and uncaught exceptions."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        text = f"{message.type}: {message.text}"
        self.console.append(text)
        if message.type == "error":
            self.console_errors.append(message.text)

    def on_page_error(self, error: Exception) -> None:
        self.page_errors.append(str(error))

    def assert_clean(self, *, allow: tuple[str, ...] = ()) -> None:
        """No uncaught exception and no console error (except those containing an ``allow`` text)."""
        errors = [e for e in self.console_errors if not any(a in e for a in allow)]
        assert not self.page_errors, f"uncaught exceptions in the page: {self.page_errors}"
        assert not errors, f"console errors in the page: {errors}"


@asynccontextmanager
async def watched_page(
    browser: Browser, *, viewport: tuple[int, int] = (1280, 800)
) -> AsyncIterator[tuple[Page, PageWatch]]:
    """A new browser context and page whose console errors and exceptions are recorded."""
    context: BrowserContext = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, locale="en-GB"
    )
    page = await context.new_page()
    watch = PageWatch()
    page.on("console", watch.on_console)
    page.on("pageerror", watch.on_page_error)
    try:
        yield page, watch
    finally:
        await context.close()


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium with a fake camera and microphone that pages are allowed to use."""
    async with launched_chromium() as browser:
        yield browser
