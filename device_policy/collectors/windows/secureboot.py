"""Secure Boot on Windows: ``Confirm-SecureBootUEFI``, else the registry's own record.

The cmdlet prints ``True`` or ``False``; on legacy-BIOS machines it fails with "Cmdlet
not supported on this platform", which means Secure Boot cannot be on. It needs an
elevated PowerShell; without one the registry value ``UEFISecureBootEnabled`` under
``…\\Control\\SecureBoot\\State`` (readable by everyone) is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.judge import judged, run_problem, unknown
from device_policy.collectors.names import BOOT_SECURE_BOOT
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.collectors.windows.regquery import read_registry
from device_policy.facts import Fact

CONFIRM_ARGV = (
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-Command",
    "Confirm-SecureBootUEFI",
)
SECURE_BOOT_STATE_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\SecureBoot\State"
_NOT_SUPPORTED = "cmdlet not supported on this platform"


@dataclass(frozen=True)
class ConfirmSecureBoot:
    """What ``parse("confirm-securebootuefi", …)`` returns."""

    secure_boot: bool
    uefi: bool


def parse_confirm_secureboot(text: str | bytes) -> ConfirmSecureBoot:
    """Parse ``Confirm-SecureBootUEFI`` output (stdout and stderr together)."""
    cleaned = clean_text(text)
    words = cleaned.split()
    if words and words[0] in ("True", "False"):
        return ConfirmSecureBoot(secure_boot=words[0] == "True", uefi=True)
    if _NOT_SUPPORTED in cleaned.lower():
        return ConfirmSecureBoot(secure_boot=False, uefi=False)
    raise UnparsableOutput("Confirm-SecureBootUEFI", "neither True nor False")


async def collect_secure_boot(runner: CommandRunner) -> list[Fact]:
    """Fact ``boot.secure_boot``."""
    result = await runner.run(CONFIRM_ARGV, timeout=30)
    reason = run_problem(result, "Confirm-SecureBootUEFI")
    if result.failure is None:
        try:
            answer = parse_confirm_secureboot(result.stdout + "\n" + result.stderr)
        except UnparsableOutput:
            pass
        else:
            detail = (
                "booted in legacy BIOS mode"
                if not answer.uefi
                else f"Secure Boot {'enabled' if answer.secure_boot else 'disabled'}"
            )
            ok = answer.secure_boot
            return [judged(BOOT_SECURE_BOOT, ok, ok, source="powershell", detail=detail)]

    registry = await read_registry(runner, SECURE_BOOT_STATE_KEY, "UEFISecureBootEnabled")
    value = registry.query.get_int("UEFISecureBootEnabled") if registry.query else None
    if value in (0, 1):
        ok = value == 1
        detail = f"registry UEFISecureBootEnabled = {value}"
        return [judged(BOOT_SECURE_BOOT, ok, ok, source="registry", detail=detail)]
    why = registry.problem or (
        "registry has no UEFISecureBootEnabled" if registry.missing else "unexpected registry value"
    )
    return [unknown(BOOT_SECURE_BOOT, "; ".join(r for r in (reason, why) if r), source="registry")]
