"""Secure Boot, firewall, screen lock, USB storage and OS version on Windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeRunner, UnparsableOutput
from device_policy.collectors.windows.firewall import (
    ADVFIREWALL_ARGV,
    collect_firewall,
    parse_advfirewall,
)
from device_policy.collectors.windows.osinfo import CURRENT_VERSION_KEY, collect_os
from device_policy.collectors.windows.regquery import parse_reg_query, reg_argv
from device_policy.collectors.windows.screenlock import (
    DESKTOP_KEY,
    DESKTOP_POLICY_KEY,
    SYSTEM_POLICY_KEY,
    collect_screen_lock,
)
from device_policy.collectors.windows.secureboot import (
    CONFIRM_ARGV,
    SECURE_BOOT_STATE_KEY,
    collect_secure_boot,
    parse_confirm_secureboot,
)
from device_policy.collectors.windows.usb import (
    REMOVABLE_STORAGE_POLICY_KEY,
    USBSTOR_KEY,
    collect_usb_storage,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "windows"


def saved(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def stderr(name: str, code: int = 1) -> CommandResult:
    return CommandResult(code, "", saved(name).decode())


NOT_FOUND = "reg_not_found_stderr.txt"


def by_name(facts: list[Fact]) -> dict[str, Fact]:
    return {fact.name: fact for fact in facts}


# --- registry ---------------------------------------------------------------


def test_reg_query_values_of_the_first_key_only() -> None:
    query = parse_reg_query(saved("reg_desktop_secure_saver.txt"))
    assert query.key == r"HKEY_CURRENT_USER\Control Panel\Desktop"
    assert query.get("screensaveistimeout") is None
    assert query.get("ScreenSaveTimeOut") == "300"
    assert query.get_int("screensaveactive") == 1
    assert query.get("PreferredUILanguages") == ["en-GB"]
    assert query.get_int("CaretTimeout") == 5000


def test_reg_query_empty_string_value() -> None:
    query = parse_reg_query(saved("reg_inactivity_timeout.txt"))
    assert query.get("legalnoticecaption") == ""
    assert query.get_int("InactivityTimeoutSecs") == 600


# --- Secure Boot ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secure_boot", "uefi"),
    [
        ("confirm_securebootuefi_true.txt", True, True),
        ("confirm_securebootuefi_false.txt", False, True),
        ("confirm_securebootuefi_bios_stderr.txt", False, False),
    ],
)
def test_confirm_securebootuefi(name: str, secure_boot: bool, uefi: bool) -> None:
    answer = parse_confirm_secureboot(saved(name))
    assert (answer.secure_boot, answer.uefi) == (secure_boot, uefi)


def test_confirm_securebootuefi_access_denied_is_refused() -> None:
    with pytest.raises(UnparsableOutput):
        parse_confirm_secureboot(saved("confirm_securebootuefi_denied_stderr.txt"))


async def test_secure_boot_on() -> None:
    runner = FakeRunner({CONFIRM_ARGV: saved("confirm_securebootuefi_true.txt")})
    (fact,) = await collect_secure_boot(runner)
    assert (fact.status, fact.value, fact.source) == (FactStatus.PASS, True, "powershell")


async def test_legacy_bios_fails() -> None:
    runner = FakeRunner({CONFIRM_ARGV: stderr("confirm_securebootuefi_bios_stderr.txt")})
    (fact,) = await collect_secure_boot(runner)
    assert (fact.status, fact.detail) == (FactStatus.FAIL, "booted in legacy BIOS mode")


async def test_not_elevated_falls_back_to_the_registry() -> None:
    runner = FakeRunner(
        {
            CONFIRM_ARGV: stderr("confirm_securebootuefi_denied_stderr.txt"),
            reg_argv(SECURE_BOOT_STATE_KEY, "UEFISecureBootEnabled"): saved("reg_secureboot_state.txt"),
        }
    )
    (fact,) = await collect_secure_boot(runner)
    assert (fact.status, fact.value, fact.source) == (FactStatus.PASS, True, "registry")
    assert fact.detail == "registry UEFISecureBootEnabled = 1"


async def test_neither_source_is_unknown() -> None:
    runner = FakeRunner(
        {
            CONFIRM_ARGV: stderr("confirm_securebootuefi_denied_stderr.txt"),
            reg_argv(SECURE_BOOT_STATE_KEY, "UEFISecureBootEnabled"): stderr(NOT_FOUND),
        }
    )
    (fact,) = await collect_secure_boot(runner)
    assert fact.status is FactStatus.UNKNOWN
    assert fact.detail == (
        "Confirm-SecureBootUEFI exited with status 1 (insufficient privileges): "
        "Confirm-SecureBootUEFI : Access was denied.; registry has no UEFISecureBootEnabled"
    )


# --- firewall ---------------------------------------------------------------


def test_all_profiles_block_inbound() -> None:
    profiles = parse_advfirewall(saved("netsh_firewall_allprofiles.txt"))
    assert (profiles.active, profiles.default_inbound_deny) == (True, True)


async def test_firewall_on_everywhere_passes() -> None:
    runner = FakeRunner({ADVFIREWALL_ARGV: saved("netsh_firewall_allprofiles.txt")})
    facts = by_name(await collect_firewall(runner))
    assert facts["firewall.active"].status is FactStatus.PASS
    assert facts["firewall.active"].detail == "profiles: domain on, private on, public on"
    assert facts["firewall.default_inbound_deny"].status is FactStatus.PASS


async def test_public_profile_off_fails_both() -> None:
    runner = FakeRunner({ADVFIREWALL_ARGV: saved("netsh_firewall_state_public_off.txt")})
    facts = by_name(await collect_firewall(runner))
    assert (facts["firewall.active"].status, facts["firewall.active"].value) == (FactStatus.FAIL, False)
    assert facts["firewall.default_inbound_deny"].value is False


async def test_state_only_output_leaves_inbound_policy_unknown() -> None:
    runner = FakeRunner({ADVFIREWALL_ARGV: saved("netsh_firewall_state_on.txt")})
    facts = by_name(await collect_firewall(runner))
    assert facts["firewall.active"].status is FactStatus.PASS
    assert facts["firewall.default_inbound_deny"].status is FactStatus.UNKNOWN


async def test_a_profile_allowing_inbound_fails() -> None:
    runner = FakeRunner({ADVFIREWALL_ARGV: saved("netsh_firewall_allow_inbound.txt")})
    facts = by_name(await collect_firewall(runner))
    deny = facts["firewall.default_inbound_deny"]
    assert (deny.status, deny.detail) == (
        FactStatus.FAIL,
        "profiles: domain block, private allow, public block",
    )


async def test_localised_firewall_output_is_unknown() -> None:
    german = "\r\nDomänenprofil-Einstellungen:\r\n------\r\nStatus                                EIN\r\n"
    runner = FakeRunner({ADVFIREWALL_ARGV: german})
    facts = by_name(await collect_firewall(runner))
    assert {fact.status for fact in facts.values()} == {FactStatus.UNKNOWN}


# --- screen lock ------------------------------------------------------------


def screen_runner(
    machine: str | CommandResult, desktop: str, policy: str | CommandResult = NOT_FOUND
) -> FakeRunner:
    def out(value: str | CommandResult) -> bytes | CommandResult:
        if isinstance(value, CommandResult):
            return value
        return stderr(value) if value.endswith("_stderr.txt") else saved(value)

    return FakeRunner(
        {
            reg_argv(SYSTEM_POLICY_KEY): out(machine),
            reg_argv(DESKTOP_KEY): out(desktop),
            reg_argv(DESKTOP_POLICY_KEY): out(policy),
        }
    )


async def test_machine_inactivity_limit() -> None:
    runner = screen_runner("reg_inactivity_timeout.txt", "reg_desktop_insecure_saver.txt")
    facts = by_name(await collect_screen_lock(runner))
    assert (facts["screen_lock.enabled"].value, facts["screen_lock.idle_delay_s"].value) == (True, 600)
    assert facts["screen_lock.idle_delay_s"].detail == "machine inactivity limit 600 s"


async def test_secure_screen_saver_shorter_than_the_machine_limit_wins() -> None:
    runner = screen_runner("reg_inactivity_timeout.txt", "reg_desktop_secure_saver.txt")
    facts = by_name(await collect_screen_lock(runner))
    assert facts["screen_lock.idle_delay_s"].value == 300
    assert facts["screen_lock.idle_delay_s"].detail == "secure screen saver after 300 s"


async def test_screen_saver_without_password_is_no_lock() -> None:
    runner = screen_runner("reg_system_policy_no_timeout.txt", "reg_desktop_insecure_saver.txt")
    facts = by_name(await collect_screen_lock(runner))
    assert (facts["screen_lock.enabled"].status, facts["screen_lock.enabled"].value) == (
        FactStatus.FAIL,
        False,
    )
    assert facts["screen_lock.idle_delay_s"].value == 0


async def test_group_policy_overrides_the_user_setting() -> None:
    policy = (
        b"\r\nHKEY_CURRENT_USER\\Software\\Policies\\Microsoft\\Windows\\Control Panel\\Desktop\r\n"
        b"    ScreenSaverIsSecure    REG_SZ    1\r\n    ScreenSaveTimeOut    REG_SZ    120\r\n\r\n"
    )
    runner = FakeRunner(
        {
            reg_argv(SYSTEM_POLICY_KEY): saved("reg_system_policy_no_timeout.txt"),
            reg_argv(DESKTOP_KEY): saved("reg_desktop_insecure_saver.txt"),
            reg_argv(DESKTOP_POLICY_KEY): policy,
        }
    )
    facts = by_name(await collect_screen_lock(runner))
    assert facts["screen_lock.idle_delay_s"].value == 120


async def test_registry_access_denied_is_unknown() -> None:
    runner = screen_runner(stderr("reg_access_denied_stderr.txt"), "reg_desktop_secure_saver.txt")
    facts = by_name(await collect_screen_lock(runner))
    assert {fact.status for fact in facts.values()} == {FactStatus.UNKNOWN}
    assert facts["screen_lock.enabled"].detail == f"reg query was denied for {SYSTEM_POLICY_KEY}"


# --- USB storage ------------------------------------------------------------


async def usb(policy: bytes | CommandResult, service: bytes | CommandResult) -> Fact:
    runner = FakeRunner(
        {
            reg_argv(REMOVABLE_STORAGE_POLICY_KEY, "Deny_All"): policy,
            reg_argv(USBSTOR_KEY, "Start"): service,
        }
    )
    (fact,) = await collect_usb_storage(runner)
    return fact


async def test_usbstor_disabled_passes() -> None:
    fact = await usb(stderr(NOT_FOUND), saved("reg_usbstor_disabled.txt"))
    assert (fact.status, fact.value, fact.detail) == (
        FactStatus.PASS,
        True,
        "USBSTOR driver disabled (Start = 4)",
    )


async def test_deny_all_policy_passes() -> None:
    policy = (
        b"\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\RemovableStorageDevices\r\n"
        b"    Deny_All    REG_DWORD    0x1\r\n\r\n"
    )
    fact = await usb(policy, saved("reg_usbstor_enabled.txt"))
    assert (fact.status, fact.detail) == (FactStatus.PASS, "Group Policy denies all removable storage")


async def test_usbstor_enabled_fails() -> None:
    fact = await usb(stderr(NOT_FOUND), saved("reg_usbstor_enabled.txt"))
    assert (fact.status, fact.value) == (FactStatus.FAIL, False)


async def test_usbstor_unreadable_is_unknown() -> None:
    fact = await usb(stderr(NOT_FOUND), stderr("reg_access_denied_stderr.txt"))
    assert fact.status is FactStatus.UNKNOWN


# --- OS ---------------------------------------------------------------------


async def test_windows_version_from_the_registry() -> None:
    runner = FakeRunner({reg_argv(CURRENT_VERSION_KEY): saved("reg_currentversion.txt")})
    facts = by_name(await collect_os(runner))
    assert (facts["os.id"].value, facts["os.id"].detail) == ("windows", "Windows 10 Enterprise")
    assert facts["os.version"].value == "10.0.19045.3914"
    pending = facts["os.pending_security_updates"]
    assert (pending.status, pending.detail) == (
        FactStatus.UNKNOWN,
        "not collected on Windows (needs the Windows Update Agent API)",
    )


async def test_reg_missing_leaves_os_unknown() -> None:
    facts = by_name(await collect_os(FakeRunner()))
    assert facts["os.version"].detail == "reg is not installed"
