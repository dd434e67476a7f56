"""Accessibility checks with axe-core (from npm) in the real page, and screenshots for review.

axe-core comes from ``node_modules/axe-core/axe.min.js`` (``npm ci`` at the repository root,
pinned in package-lock.json). Our pages forbid script tags and string-to-code (a strict CSP
with Trusted Types), so axe's source is evaluated through the DevTools protocol
(Playwright's ``page.evaluate`` is a ``Runtime.callFunctionOn``), which a page's CSP does not
govern; the page itself stays exactly as served. Under ``CI=true`` a missing axe-core fails
the test; elsewhere it skips.

A check fails on any violation whose impact is ``serious`` or ``critical``, listing the rule,
its impact, what it asks for and the elements that fail it. Every result (all impacts) is
also written to ``test-artifacts/axe/<name>.json``; screenshots go to
``test-artifacts/<area>/<name>.png``. ``test-artifacts/`` is git-ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.support.services import service_missing

REPO = Path(__file__).resolve().parents[2]
AXE_SOURCE = REPO / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO / "test-artifacts"
FAILING_IMPACTS = frozenset({"serious", "critical"})

# Loads axe once per document; answers axe's version (or null if the source did not define it).
_LOAD = """
(source) => {
  if (!window.axe) (0, eval)(source);
  return window.axe && typeof window.axe.run === 'function' ? window.axe.version : null;
}
"""

# Violations only: passes and incomplete results are large and not what a test decides on.
_RUN = """
async () => {
  const results = await window.axe.run(document, { resultTypes: ['violations'] });
  return results.violations.map((v) => ({
    rule: v.id,
    impact: v.impact || 'unknown',
    help: v.help,
    help_url: v.helpUrl,
    targets: v.nodes.map((n) => n.target.map((t) => Array.isArray(t) ? t.join(' >>> ') : t).join(' ')),
    summaries: v.nodes.map((n) => n.failureSummary || ''),
  }));
}
"""


@dataclass(frozen=True)
class Violation:
    """One axe rule that the page breaks, and where."""

    rule: str
    impact: str
    help: str
    help_url: str
    targets: list[str]
    summaries: list[str]

    @property
    def fails(self) -> bool:
        """Serious and critical violations fail a check; moderate and minor are reported only."""
        return self.impact in FAILING_IMPACTS

    def describe(self) -> str:
        """The violation in a few readable lines: rule, impact, what it asks, failing elements."""
        lines = [f"- {self.rule} ({self.impact}): {self.help}  <{self.help_url}>"]
        for target, summary in zip(self.targets, self.summaries, strict=True):
            lines.append(f"    {target}")
            first = summary.strip().splitlines()[1:2]  # axe's first reason, under "Fix any/all of"
            if first:
                lines.append(f"      {first[0].strip()}")
        return "\n".join(lines)


@cache
def axe_source() -> str:
    """axe-core's minified source from node_modules, or fail (CI) / skip the calling test."""
    if not AXE_SOURCE.is_file():
        service_missing(f"axe-core ({AXE_SOURCE.relative_to(REPO)}; run `npm ci` at the repository root)")
    return AXE_SOURCE.read_text(encoding="utf-8")


def _artifact_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "page"


async def load_axe(page: Page) -> str:
    """Evaluate axe-core in the page (through the DevTools protocol) and return its version."""
    version = await page.evaluate(_LOAD, axe_source())
    if not isinstance(version, str):
        pytest.fail("axe-core did not load in the page (window.axe.run is missing)", pytrace=False)
    return version


async def check_accessibility(
    page: Page, *, name: str, allow: Mapping[str, str] | None = None
) -> list[Violation]:
    """Run axe-core on the page as it is now; fail on serious or critical violations.

    ``name`` says which screen this is (in the failure and the artifact's file name).
    ``allow`` maps an axe rule id to the reason it is accepted on this screen; an allowed
    rule is still reported in the artifact but does not fail the check. Returns every
    violation found (all impacts, allowed or not).
    """
    allowed = dict(allow or {})
    if any(not reason.strip() for reason in allowed.values()):
        raise ValueError("every allowed axe rule needs the reason it is accepted")
    version = await load_axe(page)
    raw: list[dict[str, Any]] = await page.evaluate(_RUN)
    violations = [Violation(**v) for v in raw]

    ARTIFACTS.joinpath("axe").mkdir(parents=True, exist_ok=True)
    report = {
        "name": name,
        "url": page.url,
        "axe_version": version,
        "allowed": allowed,
        "violations": [asdict(v) for v in violations],
    }
    ARTIFACTS.joinpath("axe", f"{_artifact_name(name)}.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )

    failing = [v for v in violations if v.fails and v.rule not in allowed]
    if failing:
        listing = "\n".join(v.describe() for v in failing)
        pytest.fail(
            f"axe-core {version} found {len(failing)} serious or critical accessibility "
            f"violation(s) on {name}:\n{listing}",
            pytrace=False,
        )
    return violations


async def screenshot(page: Page, area: str, name: str) -> Path:
    """Write a full-page screenshot to ``test-artifacts/<area>/<name>.png`` and return its path."""
    path = ARTIFACTS / _artifact_name(area) / f"{_artifact_name(name)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    return path
