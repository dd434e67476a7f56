"""Secure Boot on Linux: ``mokutil --sb-state``, else the firmware's efivars.

mokutil knows more than the bare variable: shim validation switched off
(``MokSBStateRT``) and firmware in Setup Mode both mean nothing is being enforced, so both
fail. Without mokutil the ``SecureBoot`` and ``SetupMode`` EFI variables are read
directly (4 attribute bytes, then the value byte). A ``/sys/firmware`` without ``efi``
means the machine booted in legacy BIOS mode, where Secure Boot cannot be on.
"""

from __future__ import annotations

from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.files import FileReader
from device_policy.collectors.judge import judged, run_problem, unknown
from device_policy.collectors.names import BOOT_SECURE_BOOT
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

MOKUTIL_ARGV = ("mokutil", "--sb-state")
FIRMWARE_DIR = "/sys/firmware"
EFI_DIR = "/sys/firmware/efi"
EFIVARS_DIR = "/sys/firmware/efi/efivars"
GLOBAL_VARIABLE_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SECURE_BOOT_VAR = f"{EFIVARS_DIR}/SecureBoot-{GLOBAL_VARIABLE_GUID}"
SETUP_MODE_VAR = f"{EFIVARS_DIR}/SetupMode-{GLOBAL_VARIABLE_GUID}"


@dataclass(frozen=True)
class SecureBootState:
    """Secure Boot as a tool reported it; ``secure_boot`` is ``None`` when it could not tell."""

    secure_boot: bool | None
    setup_mode: bool = False
    shim_validation_disabled: bool = False
    efi: bool | None = True

    @property
    def enforced(self) -> bool | None:
        """Whether signatures are actually being checked at boot."""
        if self.secure_boot is None:
            return None
        return self.secure_boot and not self.setup_mode and not self.shim_validation_disabled


def parse_mokutil(text: str | bytes) -> SecureBootState:
    """Parse ``mokutil --sb-state`` (stdout and stderr together)."""
    lines = {line.strip() for line in clean_text(text).splitlines() if line.strip()}
    setup = "Platform is in Setup Mode" in lines
    shim_off = "SecureBoot validation is disabled in shim" in lines
    if "SecureBoot enabled" in lines:
        return SecureBootState(True, setup, shim_off)
    if "SecureBoot disabled" in lines:
        return SecureBootState(False, setup, shim_off)
    if "This system doesn't support Secure Boot" in lines:
        return SecureBootState(False)
    if "EFI variables are not supported on this system" in lines:
        return SecureBootState(None, efi=None)
    if "Cannot determine secure boot state." in lines:
        return SecureBootState(None)
    raise UnparsableOutput("mokutil", "no Secure Boot state line")


def parse_efivar(data: bytes) -> bool | None:
    """The boolean in an EFI variable file (attributes, then one value byte)."""
    if len(data) != 5 or data[4] not in (0, 1):
        return None
    return data[4] == 1


def efivar_state(files: FileReader) -> SecureBootState | str:
    """Secure Boot from efivarfs, or why it cannot be read."""
    if not files.exists(EFI_DIR):
        if not files.exists(FIRMWARE_DIR):
            return "/sys/firmware is not available (sysfs not mounted?)"
        return SecureBootState(False, efi=False)
    try:
        secure_boot = parse_efivar(files.read_bytes(SECURE_BOOT_VAR))
    except FileNotFoundError:
        if files.exists(EFIVARS_DIR):
            return SecureBootState(False)  # UEFI firmware without Secure Boot support
        return "efivarfs is not mounted"
    except OSError as exc:
        return f"cannot read the SecureBoot EFI variable ({exc.strerror or type(exc).__name__})"
    if secure_boot is None:
        return "the SecureBoot EFI variable has an unexpected value"
    try:
        setup = parse_efivar(files.read_bytes(SETUP_MODE_VAR)) is True
    except OSError:
        setup = False
    return SecureBootState(secure_boot, setup_mode=setup)


async def collect_secure_boot(runner: CommandRunner, files: FileReader) -> list[Fact]:
    """Fact ``boot.secure_boot``."""
    result = await runner.run(MOKUTIL_ARGV, timeout=10)
    why_not_mokutil = run_problem(result, "mokutil")
    state: SecureBootState | None = None
    if result.failure is None:
        try:
            state = parse_mokutil(result.stdout + "\n" + result.stderr)
        except UnparsableOutput as exc:
            why_not_mokutil = exc.detail
    if state is not None and state.secure_boot is not None:
        return [_fact(state, "mokutil")]
    fallback = efivar_state(files)
    if isinstance(fallback, str):
        reasons = [reason for reason in (why_not_mokutil, fallback) if reason]
        return [unknown(BOOT_SECURE_BOOT, "; ".join(reasons), source="efivarfs")]
    return [_fact(fallback, "efivarfs")]


def _fact(state: SecureBootState, source: str) -> Fact:
    enforced = bool(state.enforced)
    if state.efi is False:
        detail = "booted in legacy BIOS mode"
    elif state.shim_validation_disabled:
        detail = "Secure Boot is on but shim validation is disabled"
    elif state.setup_mode:
        detail = "firmware is in Setup Mode"
    else:
        detail = "Secure Boot enabled" if enforced else "Secure Boot disabled"
    return judged(BOOT_SECURE_BOOT, enforced, enforced, source=source, detail=detail)
