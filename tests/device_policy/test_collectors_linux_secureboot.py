"""boot.secure_boot from mokutil, falling back to the efivars."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeFiles, FakeRunner, UnparsableOutput
from device_policy.collectors.linux.secureboot import (
    MOKUTIL_ARGV,
    SECURE_BOOT_VAR,
    SETUP_MODE_VAR,
    collect_secure_boot,
    parse_efivar,
    parse_mokutil,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "linux"
ATTRS = b"\x06\x00\x00\x00"  # EFI_VARIABLE_BOOTSERVICE_ACCESS | RUNTIME_ACCESS


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


async def secure_boot(runner: FakeRunner, files: FakeFiles | None = None) -> Fact:
    (fact,) = await collect_secure_boot(runner, files or FakeFiles())
    return fact


@pytest.mark.parametrize(
    ("name", "enabled", "enforced"),
    [
        ("mokutil_enabled.txt", True, True),
        ("mokutil_enabled_colour.txt", True, True),
        ("mokutil_disabled.txt", False, False),
        ("mokutil_shim_validation_disabled.txt", True, False),
        ("mokutil_setup_mode.txt", False, False),
    ],
)
def test_mokutil_states(name: str, enabled: bool, enforced: bool) -> None:
    state = parse_mokutil(saved(name))
    assert (state.secure_boot, state.enforced) == (enabled, enforced)


def test_mokutil_without_efivars_cannot_tell() -> None:
    assert parse_mokutil(saved("mokutil_no_efivars.txt")).secure_boot is None


def test_mokutil_output_of_another_tool_is_refused() -> None:
    with pytest.raises(UnparsableOutput):
        parse_mokutil("Usage: mokutil [OPTIONS]")


def test_efivar_value_byte() -> None:
    assert parse_efivar(ATTRS + b"\x01") is True
    assert parse_efivar(ATTRS + b"\x00") is False
    assert parse_efivar(ATTRS) is None
    assert parse_efivar(ATTRS + b"\x07") is None


async def test_enabled_per_mokutil_passes() -> None:
    fact = await secure_boot(FakeRunner({MOKUTIL_ARGV: saved("mokutil_enabled.txt")}))
    assert (fact.status, fact.value, fact.source) == (FactStatus.PASS, True, "mokutil")


async def test_shim_validation_off_fails_even_though_firmware_says_enabled() -> None:
    fact = await secure_boot(FakeRunner({MOKUTIL_ARGV: saved("mokutil_shim_validation_disabled.txt")}))
    assert (fact.status, fact.value) == (FactStatus.FAIL, False)
    assert fact.detail == "Secure Boot is on but shim validation is disabled"


async def test_without_mokutil_the_efivar_is_read() -> None:
    files = FakeFiles({SECURE_BOOT_VAR: ATTRS + b"\x01", SETUP_MODE_VAR: ATTRS + b"\x00"})
    fact = await secure_boot(FakeRunner(), files)
    assert (fact.status, fact.value, fact.source) == (FactStatus.PASS, True, "efivarfs")


async def test_efivar_in_setup_mode_fails() -> None:
    files = FakeFiles({SECURE_BOOT_VAR: ATTRS + b"\x01", SETUP_MODE_VAR: ATTRS + b"\x01"})
    fact = await secure_boot(FakeRunner(), files)
    assert (fact.status, fact.detail) == (FactStatus.FAIL, "firmware is in Setup Mode")


async def test_legacy_bios_boot_fails() -> None:
    runner = FakeRunner({MOKUTIL_ARGV: CommandResult(1, "", saved("mokutil_no_efivars.txt"))})
    files = FakeFiles()
    files.add_dir("/sys/firmware/acpi")
    fact = await secure_boot(runner, files)
    assert (fact.status, fact.value, fact.detail) == (
        FactStatus.FAIL,
        False,
        "booted in legacy BIOS mode",
    )


async def test_unreadable_efivar_without_mokutil_is_unknown() -> None:
    files = FakeFiles({SECURE_BOOT_VAR: PermissionError(13, "Permission denied")})
    fact = await secure_boot(FakeRunner(), files)
    assert fact.status is FactStatus.UNKNOWN
    assert fact.detail == (
        "mokutil is not installed; cannot read the SecureBoot EFI variable (Permission denied)"
    )


async def test_no_sysfs_is_unknown_rather_than_bios() -> None:
    fact = await secure_boot(FakeRunner(), FakeFiles())
    assert fact.status is FactStatus.UNKNOWN
    assert fact.detail == ("mokutil is not installed; /sys/firmware is not available (sysfs not mounted?)")


async def test_uefi_without_secure_boot_support_fails() -> None:
    files = FakeFiles()
    files.add_dir("/sys/firmware/efi/efivars")
    fact = await secure_boot(FakeRunner(), files)
    assert (fact.status, fact.value) == (FactStatus.FAIL, False)
