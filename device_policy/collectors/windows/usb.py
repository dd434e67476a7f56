"""USB mass storage on Windows, from the registry.

Blocked when the USB storage driver is disabled (``Start`` = 4 under
``…\\Services\\USBSTOR``) or Group Policy denies all removable storage
(``Deny_All`` = 1 under ``…\\Policies\\Microsoft\\Windows\\RemovableStorageDevices``).
"""

from __future__ import annotations

from device_policy.collectors.judge import judged, unknown
from device_policy.collectors.names import USB_MASS_STORAGE_BLOCKED
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.windows.regquery import read_registry
from device_policy.facts import Fact

USBSTOR_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\USBSTOR"
REMOVABLE_STORAGE_POLICY_KEY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices"
SERVICE_DISABLED = 4
SOURCE = "registry"


async def collect_usb_storage(runner: CommandRunner) -> list[Fact]:
    """Fact ``usb.mass_storage_blocked``."""
    name = USB_MASS_STORAGE_BLOCKED
    policy = await read_registry(runner, REMOVABLE_STORAGE_POLICY_KEY, "Deny_All")
    if policy.query and policy.query.get_int("Deny_All") == 1:
        detail = "Group Policy denies all removable storage"
        return [judged(name, True, True, source=SOURCE, detail=detail)]
    service = await read_registry(runner, USBSTOR_KEY, "Start")
    start = service.query.get_int("Start") if service.query else None
    if start is None:
        why = service.problem or "USBSTOR service has no Start value"
        return [unknown(name, why, source=SOURCE)]
    if start == SERVICE_DISABLED:
        detail = "USBSTOR driver disabled (Start = 4)"
        return [judged(name, True, True, source=SOURCE, detail=detail)]
    if policy.problem:
        detail = f"USBSTOR Start = {start}; removable-storage policy unreadable: {policy.problem}"
        return [unknown(name, detail, source=SOURCE)]
    detail = f"USBSTOR driver enabled (Start = {start}) and no deny-all storage policy"
    return [judged(name, False, False, source=SOURCE, detail=detail)]
