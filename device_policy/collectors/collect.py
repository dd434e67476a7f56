"""Collecting on the platform at hand: pick the Linux or the Windows collectors."""

from __future__ import annotations

import os
import sys

from device_policy.collectors.files import FileReader, LocalFiles
from device_policy.collectors.linux import collect_linux
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.windows import collect_windows
from device_policy.errors import UnsupportedPlatform
from device_policy.facts import FactSet

_ALIASES = {"linux": "linux", "linux2": "linux", "windows": "windows", "win32": "windows"}


def platform_name(platform: str | None = None) -> str:
    """``"linux"`` or ``"windows"`` for a platform string (default: this machine's)."""
    name = _ALIASES.get((platform or sys.platform).lower())
    if name is None:
        raise UnsupportedPlatform(f'There are no posture collectors for platform "{platform}"')
    return name


async def collect(platform: str, runner: CommandRunner, files: FileReader | None = None) -> FactSet:
    """Collect every posture fact with the collectors for ``platform`` (linux or windows)."""
    if platform_name(platform) == "windows":
        return await collect_windows(runner, system_drive=os.environ.get("SystemDrive", "C:"))
    return await collect_linux(runner, files if files is not None else LocalFiles())
