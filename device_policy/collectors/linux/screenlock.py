"""Screen lock on Linux (GNOME): ``gsettings get`` for lock-enabled, idle-delay, lock-delay.

The screen locks ``idle-delay + lock-delay`` seconds after the last input, provided
``lock-enabled`` is true and ``idle-delay`` is not 0 ("never"). gsettings reads the
*calling user's* dconf database, so the agent must run it in the desktop user's session;
other desktops have no GNOME schema and yield ``unknown``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.judge import judged, run_problem, unknown, unknown_all
from device_policy.collectors.names import (
    MAX_IDLE_DELAY_S,
    SCREEN_LOCK_ENABLED,
    SCREEN_LOCK_IDLE_DELAY_S,
)
from device_policy.collectors.runner import CommandResult, CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

LOCK_ENABLED_ARGV = ("gsettings", "get", "org.gnome.desktop.screensaver", "lock-enabled")
IDLE_DELAY_ARGV = ("gsettings", "get", "org.gnome.desktop.session", "idle-delay")
LOCK_DELAY_ARGV = ("gsettings", "get", "org.gnome.desktop.screensaver", "lock-delay")

_MEMORY_BACKEND = "'memory' GSettings backend"
_TYPED_INT = re.compile(r"^(?:u?int(?:16|32|64)|byte)\s+(-?\d+)$")
_STRING = re.compile(r"^'(.*)'$")

GVariantValue = bool | int | float | str


@dataclass(frozen=True)
class GSettingsValue:
    """What ``parse("gsettings-value", …)`` returns: one value as gsettings prints it."""

    value: GVariantValue


def parse_gsettings_value(text: str | bytes) -> GSettingsValue:
    """Parse one GVariant value printed by ``gsettings get`` (``true``, ``uint32 300``…)."""
    raw = clean_text(text).strip()
    if raw in ("true", "false"):
        return GSettingsValue(raw == "true")
    if (typed := _TYPED_INT.match(raw)) is not None:
        return GSettingsValue(int(typed.group(1)))
    if re.fullmatch(r"-?\d+", raw):
        return GSettingsValue(int(raw))
    if (string := _STRING.match(raw)) is not None:
        return GSettingsValue(string.group(1))
    raise UnparsableOutput("gsettings", "not a boolean, integer or string value")


def _read(result: CommandResult, key: str) -> tuple[GVariantValue | None, str | None]:
    """The value gsettings printed, or ``None`` and the reason there is none."""
    problem = run_problem(result, "gsettings")
    if problem:
        return None, problem
    if _MEMORY_BACKEND in result.stderr:
        # No dconf for this process: gsettings prints schema defaults, not the user's settings.
        return None, "gsettings has no settings backend (not run in the desktop session)"
    try:
        return parse_gsettings_value(result.stdout).value, None
    except UnparsableOutput:
        return None, f"gsettings printed an unexpected value for {key}"


def _as_int(value: GVariantValue | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def collect_screen_lock(runner: CommandRunner) -> list[Fact]:
    """Facts ``screen_lock.enabled`` and ``screen_lock.idle_delay_s``."""
    names = (SCREEN_LOCK_ENABLED, SCREEN_LOCK_IDLE_DELAY_S)
    enabled, problem = _read(await runner.run(LOCK_ENABLED_ARGV, timeout=10), "lock-enabled")
    if problem:
        return unknown_all(names, problem, source="gsettings")
    if not isinstance(enabled, bool):
        return unknown_all(names, "lock-enabled is not a boolean", source="gsettings")
    idle_raw, problem = _read(await runner.run(IDLE_DELAY_ARGV, timeout=10), "idle-delay")
    idle = _as_int(idle_raw)
    if idle is None:
        reason = problem or "idle-delay is not an integer"
        return [
            unknown(SCREEN_LOCK_ENABLED, f"idle-delay unknown: {reason}", source="gsettings"),
            unknown(SCREEN_LOCK_IDLE_DELAY_S, reason, source="gsettings"),
        ]
    lock_raw, _ = _read(await runner.run(LOCK_DELAY_ARGV, timeout=10), "lock-delay")
    lock_delay = _as_int(lock_raw)
    # An unreadable lock-delay can only make the real delay longer: take 0 and say so.
    note = "" if lock_delay is not None else " (lock-delay unreadable, taken as 0)"
    lock_delay = lock_delay or 0
    if idle == 0:
        return [
            judged(
                SCREEN_LOCK_ENABLED,
                False,
                False,
                source="gsettings",
                detail="idle-delay is 0: the session never goes idle" + note,
            ),
            judged(
                SCREEN_LOCK_IDLE_DELAY_S,
                0,
                False,
                source="gsettings",
                detail="idle-delay is 0 (never)" + note,
            ),
        ]
    delay = idle + lock_delay
    delay_ok = 0 < delay <= MAX_IDLE_DELAY_S
    too_long = "" if delay_ok else f", more than {MAX_IDLE_DELAY_S} s"
    return [
        judged(
            SCREEN_LOCK_ENABLED,
            enabled,
            enabled,
            source="gsettings",
            detail=f"lock-enabled is {str(enabled).lower()}" + note,
        ),
        judged(
            SCREEN_LOCK_IDLE_DELAY_S,
            delay,
            delay_ok,
            source="gsettings",
            detail=f"idle-delay {idle} s + lock-delay {lock_delay} s{too_long}" + note,
        ),
    ]
