"""Screen lock on Windows, from the registry.

Two mechanisms lock an idle session: the machine inactivity limit
(``InactivityTimeoutSecs`` under ``…\\Policies\\System``, "Interactive logon: Machine
inactivity limit"), and a password-protected screen saver (``ScreenSaveActive``,
``ScreenSaverIsSecure``, ``ScreenSaveTimeOut`` under ``HKCU\\Control Panel\\Desktop``,
where Group Policy values under ``HKCU\\Software\\Policies\\…`` win). The lock delay is
the shortest of those that apply. ``HKCU`` is the agent's own user: run the agent in
the clinician's session, not as a service account.
"""

from __future__ import annotations

from device_policy.collectors.invoke import Problem
from device_policy.collectors.judge import judged, unknown_all
from device_policy.collectors.names import (
    MAX_IDLE_DELAY_S,
    SCREEN_LOCK_ENABLED,
    SCREEN_LOCK_IDLE_DELAY_S,
)
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import parse_int
from device_policy.collectors.windows.regquery import RegData, read_registry_values
from device_policy.facts import Fact

SYSTEM_POLICY_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System"
DESKTOP_KEY = r"HKCU\Control Panel\Desktop"
DESKTOP_POLICY_KEY = r"HKCU\Software\Policies\Microsoft\Windows\Control Panel\Desktop"
SCREEN_SAVER_VALUES = ("ScreenSaveActive", "ScreenSaverIsSecure", "ScreenSaveTimeOut")
SOURCE = "registry"


def _int(data: RegData | None) -> int | None:
    if isinstance(data, int):
        return data
    return parse_int(data) if isinstance(data, str) else None


async def collect_screen_lock(runner: CommandRunner) -> list[Fact]:
    """Facts ``screen_lock.enabled`` and ``screen_lock.idle_delay_s``."""
    names = (SCREEN_LOCK_ENABLED, SCREEN_LOCK_IDLE_DELAY_S)
    machine = await read_registry_values(runner, SYSTEM_POLICY_KEY, ("InactivityTimeoutSecs",))
    if isinstance(machine, Problem):
        return unknown_all(names, machine, source=SOURCE)
    user = await read_registry_values(runner, DESKTOP_KEY, SCREEN_SAVER_VALUES)
    if isinstance(user, Problem):
        return unknown_all(names, user, source=SOURCE)
    policy = await read_registry_values(runner, DESKTOP_POLICY_KEY, SCREEN_SAVER_VALUES)
    if isinstance(policy, Problem):
        return unknown_all(names, policy, source=SOURCE)

    def effective(value: str) -> int | None:
        # A Group Policy setting overrides what the user chose.
        return _int(policy[value]) if policy[value] is not None else _int(user[value])

    candidates: list[tuple[int, str]] = []
    inactivity = _int(machine["InactivityTimeoutSecs"])
    if inactivity:
        candidates.append((inactivity, f"machine inactivity limit {inactivity} s"))
    saver_timeout = effective("ScreenSaveTimeOut")
    saver_on = effective("ScreenSaveActive") == 1 and effective("ScreenSaverIsSecure") == 1
    if saver_on and saver_timeout:
        candidates.append((saver_timeout, f"secure screen saver after {saver_timeout} s"))
    if not candidates:
        detail = "no machine inactivity limit and no password-protected screen saver"
        return [
            judged(SCREEN_LOCK_ENABLED, False, False, source=SOURCE, detail=detail),
            judged(SCREEN_LOCK_IDLE_DELAY_S, 0, False, source=SOURCE, detail=detail),
        ]
    delay, how = min(candidates)
    ok = delay <= MAX_IDLE_DELAY_S
    too_long = "" if ok else f", more than {MAX_IDLE_DELAY_S} s"
    return [
        judged(SCREEN_LOCK_ENABLED, True, True, source=SOURCE, detail=how),
        judged(SCREEN_LOCK_IDLE_DELAY_S, delay, ok, source=SOURCE, detail=how + too_long),
    ]
