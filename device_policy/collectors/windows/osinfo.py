"""Operating system identity on Windows: the NT version from the registry.

``HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion`` holds
``CurrentMajorVersionNumber``, ``CurrentMinorVersionNumber``, ``CurrentBuild`` and ``UBR``
(the patch level); ``os.version`` is ``major.minor.build.ubr`` as ``winver`` shows it
(Windows 11 is still NT 10.0, told apart by its build ≥ 22000). Pending security updates
need the Windows Update Agent API, which the collectors do not call yet: that fact is
``unknown`` on Windows.
"""

from __future__ import annotations

from device_policy.collectors.judge import judged, unknown, unknown_all
from device_policy.collectors.names import OS_ID, OS_PENDING_SECURITY_UPDATES, OS_VERSION
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.windows.regquery import read_registry
from device_policy.facts import Fact

CURRENT_VERSION_KEY = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
SOURCE = "registry"


async def collect_os(runner: CommandRunner) -> list[Fact]:
    """Facts ``os.id``, ``os.version`` and (unknown) ``os.pending_security_updates``."""
    pending = unknown(
        OS_PENDING_SECURITY_UPDATES,
        "not collected on Windows (needs the Windows Update Agent API)",
        source="windows-update",
    )
    answer = await read_registry(runner, CURRENT_VERSION_KEY)
    if answer.query is None:
        why = answer.problem or "the CurrentVersion key is missing"
        return [*unknown_all((OS_ID, OS_VERSION), why, source=SOURCE), pending]
    query = answer.query
    major = query.get_int("CurrentMajorVersionNumber")
    minor = query.get_int("CurrentMinorVersionNumber")
    build = query.get("CurrentBuild")
    ubr = query.get_int("UBR")
    product = query.get("ProductName")
    detail = product if isinstance(product, str) else None
    os_id = judged(OS_ID, "windows", True, source=SOURCE, detail=detail)
    if major is None or minor is None or not isinstance(build, str) or not build.isdigit():
        legacy = query.get("CurrentVersion")
        if isinstance(legacy, str) and isinstance(build, str) and build.isdigit():
            version = f"{legacy}.{build}"  # before Windows 10 there are no *VersionNumber values
            return [os_id, judged(OS_VERSION, version, True, source=SOURCE), pending]
        return [os_id, unknown(OS_VERSION, "no version numbers in the registry", source=SOURCE), pending]
    version = f"{major}.{minor}.{build}" + (f".{ubr}" if ubr is not None else "")
    return [os_id, judged(OS_VERSION, version, True, source=SOURCE), pending]
