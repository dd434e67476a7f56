"""The demo's timeline: a step passes only when it did what it should, a failure says what
happened instead, what follows a failure is not run, and the terminal shows all of it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from server.cli import cli
from server.demo.render import TimelineRenderer
from server.demo.steps import Shown, Timeline, Unexpected


class Refused(Exception):
    code = "grant_revoked"


async def test_a_step_that_meets_its_expectation_passes_with_what_it_showed() -> None:
    timeline = Timeline()

    async def grant_refused() -> Shown:
        return Shown("refused, 401 grant_revoked", {"code": "grant_revoked"})

    result = await timeline.step("grant_after_end", "The grant no longer works", grant_refused)
    assert (result.outcome, result.summary, result.facts) == (
        "passed",
        "refused, 401 grant_revoked",
        {"code": "grant_revoked"},
    )
    assert timeline.ok


async def test_an_unmet_expectation_fails_the_step_and_the_rest_is_not_run() -> None:
    timeline = Timeline()

    async def grant_accepted() -> Shown:
        raise Unexpected("the grant still read the document after the end", refused=False)

    async def never() -> Shown:
        raise AssertionError("a step after a failure ran")

    failed = await timeline.step("grant_after_end", "The grant no longer works", grant_accepted)
    skipped = await timeline.step("audit", "Export and verify the audit trail", never)
    assert (failed.outcome, failed.summary, failed.facts) == (
        "failed",
        "the grant still read the document after the end",
        {"refused": False},
    )
    assert (skipped.outcome, skipped.summary) == ("skipped", "not run")
    assert not timeline.ok


async def test_an_error_fails_the_step_with_its_type_and_code() -> None:
    timeline = Timeline()

    async def boom() -> Shown:
        raise Refused("The record grant has been revoked")

    result = await timeline.step("document", "Read the document", boom)
    assert result.outcome == "failed"
    assert result.summary == "Refused (grant_revoked): The record grant has been revoked"


async def test_the_terminal_shows_marks_times_and_summaries() -> None:
    console = Console(record=True, width=100, force_terminal=False)
    timeline = Timeline(TimelineRenderer(console))

    async def ok() -> Shown:
        return Shown("video frames received: laptop ← room 63, room ← laptop 65")

    async def bad() -> Shown:
        raise Unexpected("a laptop with its SIM PIN lock off got a posture token")

    await timeline.step("media", "Media flows both ways", ok)
    await timeline.step("posture_refused", "Laptop with SIM PIN lock off is refused", bad)
    await timeline.step("audit", "Export and verify the audit trail", ok)
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines[0].startswith("✓ Media flows both ways") and lines[0].endswith(" s")
    assert lines[1].strip() == "video frames received: laptop ← room 63, room ← laptop 65"
    assert lines[2].startswith("✗ Laptop with SIM PIN lock off is refused")
    assert lines[3].strip() == "a laptop with its SIM PIN lock off got a posture token"
    assert lines[4].startswith("· Export and verify the audit trail")
    assert lines[5].strip() == "not run"


def test_the_demo_refuses_a_data_directory_that_holds_data(tmp_path: Path) -> None:
    (tmp_path / "telemed.db").write_bytes(b"someone's data")
    result = CliRunner().invoke(cli, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "already holds data; give a new or empty directory" in " ".join(result.output.split())
    assert (tmp_path / "telemed.db").read_bytes() == b"someone's data"
