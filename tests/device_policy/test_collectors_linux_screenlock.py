"""screen_lock.enabled and screen_lock.idle_delay_s from GNOME's gsettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeRunner, UnparsableOutput
from device_policy.collectors.linux.screenlock import (
    IDLE_DELAY_ARGV,
    LOCK_DELAY_ARGV,
    LOCK_ENABLED_ARGV,
    collect_screen_lock,
    parse_gsettings_value,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "linux"


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


async def screen_lock(enabled: str, idle: str | CommandResult, lock: str = "uint32 0\n") -> dict[str, Fact]:
    runner = FakeRunner({LOCK_ENABLED_ARGV: enabled, IDLE_DELAY_ARGV: idle, LOCK_DELAY_ARGV: lock})
    return {fact.name: fact for fact in await collect_screen_lock(runner)}


@pytest.mark.parametrize(
    ("printed", "value"),
    [("true\n", True), ("false\n", False), ("uint32 300\n", 300), ("int32 -1", -1), ("'blank'", "blank")],
)
def test_gsettings_values(printed: str, value: object) -> None:
    assert parse_gsettings_value(printed).value == value


def test_gsettings_error_text_is_refused() -> None:
    with pytest.raises(UnparsableOutput):
        parse_gsettings_value("No such schema “org.gnome.desktop.screensaver”")


async def test_gnome_defaults_pass() -> None:
    facts = await screen_lock(
        saved("gsettings_lock_enabled_true.txt"),
        saved("gsettings_idle_delay_300.txt"),
        saved("gsettings_lock_delay_0.txt"),
    )
    enabled, delay = facts["screen_lock.enabled"], facts["screen_lock.idle_delay_s"]
    assert (enabled.status, enabled.value) == (FactStatus.PASS, True)
    assert (delay.status, delay.value, delay.detail) == (
        FactStatus.PASS,
        300,
        "idle-delay 300 s + lock-delay 0 s",
    )


async def test_lock_delay_adds_to_the_idle_delay() -> None:
    facts = await screen_lock("true\n", "uint32 600\n", "uint32 600\n")
    delay = facts["screen_lock.idle_delay_s"]
    assert (delay.status, delay.value) == (FactStatus.FAIL, 1200)
    assert delay.detail == "idle-delay 600 s + lock-delay 600 s, more than 900 s"


async def test_lock_disabled_fails() -> None:
    facts = await screen_lock("false\n", "uint32 300\n")
    assert (facts["screen_lock.enabled"].status, facts["screen_lock.enabled"].value) == (
        FactStatus.FAIL,
        False,
    )


async def test_idle_delay_zero_means_never() -> None:
    facts = await screen_lock("true\n", "uint32 0\n")
    assert facts["screen_lock.enabled"].status is FactStatus.FAIL
    assert facts["screen_lock.idle_delay_s"].value == 0
    assert facts["screen_lock.idle_delay_s"].detail == "idle-delay is 0 (never)"


async def test_non_gnome_desktop_is_unknown() -> None:
    missing_schema = CommandResult(1, "", "No such schema “org.gnome.desktop.screensaver”\n")
    runner = FakeRunner({LOCK_ENABLED_ARGV: missing_schema})
    facts = {fact.name: fact for fact in await collect_screen_lock(runner)}
    for fact in facts.values():
        assert fact.status is FactStatus.UNKNOWN
        assert fact.detail == (
            "gsettings exited with status 1: No such schema “org.gnome.desktop.screensaver”"
        )


async def test_gsettings_missing_is_unknown() -> None:
    facts = {fact.name: fact for fact in await collect_screen_lock(FakeRunner())}
    assert facts["screen_lock.enabled"].detail == "gsettings is not installed"
    assert facts["screen_lock.idle_delay_s"].status is FactStatus.UNKNOWN


async def test_defaults_from_the_memory_backend_are_not_believed() -> None:
    # Run outside a desktop session, gsettings falls back to schema defaults and warns.
    warning = (
        "\n(process:4242): GLib-GIO-WARNING **: 10:00:00.000: Using the 'memory' GSettings "
        "backend.  Your settings will not be saved or shared with other applications.\n"
    )
    runner = FakeRunner(
        {
            LOCK_ENABLED_ARGV: CommandResult(0, "true\n", warning),
            IDLE_DELAY_ARGV: CommandResult(0, "uint32 300\n", warning),
            LOCK_DELAY_ARGV: CommandResult(0, "uint32 0\n", warning),
        }
    )
    facts = {fact.name: fact for fact in await collect_screen_lock(runner)}
    assert {fact.status for fact in facts.values()} == {FactStatus.UNKNOWN}
    assert facts["screen_lock.enabled"].detail == (
        "gsettings has no settings backend (not run in the desktop session)"
    )
