"""What tests read from the specialist's page: its screen, its signalling frames, its video."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.async_api import Page, WebSocket

WAIT_MS = 20_000
# What a tile says about its connection: a level in words, the round trip and the loss.
QUALITY_TEXT = re.compile(r"^(Good|Fair|Poor) connection · delay \d+ ms · \d+(\.\d)?% lost$")
# Pass page.wait_for_function a function ("() => …"), never a bare expression: Playwright
# evaluates expressions with eval, which the page's Content-Security-Policy forbids.

# Counts what the page does with WebRTC, without changing it (added before the page's script runs).
RTC_PROBE = """
(() => {
  const probe = { peerConnections: 0, remoteDescriptions: 0 };
  const configurations = [];
  const connections = [];
  window.__rtcProbe = probe;
  window.__rtcConfigurations = configurations;
  window.__rtcConnections = connections;
  const Original = window.RTCPeerConnection;
  const setRemote = Original.prototype.setRemoteDescription;
  Original.prototype.setRemoteDescription = function (...args) {
    probe.remoteDescriptions += 1;
    return setRemote.apply(this, args);
  };
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      probe.peerConnections += 1;
      configurations.push(JSON.parse(JSON.stringify(args[0] || {})));
      connections.push(this);
    }
  };
})();
"""


class Frames:
    """Every signalling frame the page sent and received, as JSON."""

    def __init__(self, page: Page) -> None:
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.sockets = 0
        page.on("websocket", self._on_socket)

    def _on_socket(self, ws: WebSocket) -> None:
        self.sockets += 1
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))

    def types(self) -> list[str]:
        return [m["type"] for m in self.received]

    def hellos(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == "hello"]

    def welcomes(self) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == "welcome"]


async def screen(page: Page) -> str | None:
    """The screen the page shows: loading, camera, early, setup, waiting, call or message."""
    value = await page.evaluate("document.body.dataset.screen")
    return None if value is None else str(value)


async def wait_for_screen(page: Page, name: str, *, message: str | None = None) -> None:
    """Wait until the page shows screen ``name`` (and, for ``message``, that message)."""
    await page.wait_for_function(
        "([name, message]) => document.body.dataset.screen === name"
        " && (message === null || document.body.dataset.message === message)",
        arg=[name, message],
        timeout=WAIT_MS,
    )


JOIN_BUTTON = "Join the consultation"


async def open_and_join(page: Page, link: str) -> None:
    """Open the invite link, wait for the set-up check, and press Join (which spends the invite)."""
    await page.goto(link)
    await wait_for_screen(page, "setup")
    await page.get_by_role("button", name=JOIN_BUTTON).click()


def tile_selector(participant_id: str) -> str:
    return f'figure[data-participant="{participant_id}"]'


async def video_playing(page: Page, selector: str) -> None:
    """The <video> shows a real picture and its time moves on."""
    await page.wait_for_function(
        "sel => { const v = document.querySelector(sel); return v && v.videoWidth > 0 && v.currentTime > 0 }",
        arg=selector,
        timeout=WAIT_MS,
    )
    before = await page.eval_on_selector(selector, "v => v.currentTime")
    await page.wait_for_function(
        "([sel, t]) => document.querySelector(sel).currentTime > t + 0.5",
        arg=[selector, before],
        timeout=WAIT_MS,
    )


async def remote_video_playing(page: Page, participant_id: str) -> None:
    """The participant's video on the page plays."""
    await video_playing(page, f"{tile_selector(participant_id)} video")


async def rtc_probe(page: Page) -> dict[str, int]:
    """What RTC_PROBE counted."""
    counts: dict[str, int] = await page.evaluate("window.__rtcProbe")
    return counts


async def rtc_configurations(page: Page) -> list[dict[str, Any]]:
    """The RTCConfiguration of every peer connection the page created (needs RTC_PROBE)."""
    configurations: list[dict[str, Any]] = await page.evaluate("window.__rtcConfigurations")
    return configurations


SELECTED_PAIR = """
async () => {
  const pc = window.__rtcConnections[window.__rtcConnections.length - 1];
  const stats = await pc.getStats();
  let pairId = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  if (!pairId) return null;
  const pair = stats.get(pairId);
  return {
    local: stats.get(pair.localCandidateId).candidateType,
    remote: stats.get(pair.remoteCandidateId).candidateType,
  };
}
"""


async def selected_pair(page: Page) -> dict[str, str] | None:
    """Candidate types of the page's latest peer connection's selected pair (needs RTC_PROBE)."""
    pair: dict[str, str] | None = await page.evaluate(SELECTED_PAIR)
    return pair
