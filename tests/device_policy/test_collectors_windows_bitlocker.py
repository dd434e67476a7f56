"""disk.root_encrypted and disk.swap_encrypted on Windows from manage-bde and PagingFiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeRunner, UnparsableOutput
from device_policy.collectors.windows.bitlocker import (
    MANAGE_BDE_ARGV,
    MEMORY_MANAGEMENT_KEY,
    collect_bitlocker,
    parse_manage_bde,
)
from device_policy.collectors.windows.regquery import reg_argv
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "windows"
PAGING = reg_argv(MEMORY_MANAGEMENT_KEY, "PagingFiles")


def saved(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def bitlocker(
    manage_bde: bytes | CommandResult, paging: str = "reg_paging_files.txt"
) -> dict[str, Fact]:
    runner = FakeRunner({MANAGE_BDE_ARGV: manage_bde, PAGING: saved(paging)})
    return {fact.name: fact for fact in await collect_bitlocker(runner)}


def test_fully_encrypted_system_volume() -> None:
    (volume,) = parse_manage_bde(saved("manage_bde_on.txt")).volumes
    assert (volume.volume, volume.label, volume.protection, volume.fully_encrypted) == (
        "C:",
        "Windows",
        "on",
        True,
    )
    assert (volume.percentage_encrypted, volume.encrypted) == (100.0, True)


def test_two_volumes_one_still_encrypting() -> None:
    status = parse_manage_bde(saved("manage_bde_encrypting_two_volumes.txt"))
    c, d = status.volume("C:"), status.volume("d:")
    assert c is not None and d is not None
    assert (c.conversion_status, c.percentage_encrypted, c.encrypted) == (
        "Encryption in Progress",
        45.3,
        False,
    )
    # Windows 11 encrypts used space only; that counts as complete.
    assert (d.conversion_status, d.encrypted) == ("Used Space Only Encrypted", True)


def test_suspended_protection_is_off() -> None:
    (volume,) = parse_manage_bde(saved("manage_bde_suspended.txt")).volumes
    assert (volume.protection_status, volume.protection, volume.encrypted) == (
        "Protection Off (1 reboots left)",
        "off",
        False,
    )


@pytest.mark.parametrize("name", ["manage_bde_de.txt", "manage_bde_de_utf16.txt", "manage_bde_de_cp850.txt"])
def test_german_output_in_every_encoding_windows_saves(name: str) -> None:
    (volume,) = parse_manage_bde(saved(name)).volumes
    assert (volume.protection_status, volume.protection) == ("Der Schutz ist aktiviert.", "on")
    assert (volume.percentage_encrypted, volume.encrypted) == (100.0, True)


def test_german_in_progress_at_100_percent_is_not_complete() -> None:
    (volume,) = parse_manage_bde(saved("manage_bde_de_in_progress.txt")).volumes
    assert (volume.percentage_encrypted, volume.encrypted) == (100.0, False)


def test_german_protection_off_is_not_mistaken_for_on() -> None:
    # "deaktiviert" contains "aktiviert": the table matches whole values only.
    (volume,) = parse_manage_bde(saved("manage_bde_de_off.txt")).volumes
    assert (volume.protection, volume.encrypted) == ("off", False)


def test_an_unknown_language_is_unknown_not_a_guess() -> None:
    (volume,) = parse_manage_bde(saved("manage_bde_fr.txt")).volumes
    assert (volume.volume, volume.protection, volume.encrypted) == ("C:", None, None)


def test_error_output_is_refused() -> None:
    with pytest.raises(UnparsableOutput):
        parse_manage_bde(saved("manage_bde_not_admin.txt"))


async def test_protected_laptop_passes_both() -> None:
    facts = await bitlocker(saved("manage_bde_on.txt"))
    root, swap = facts["disk.root_encrypted"], facts["disk.swap_encrypted"]
    assert (root.status, root.value) == (FactStatus.PASS, True)
    assert root.detail == ("C: protection: Protection On, conversion: Fully Encrypted, 100% encrypted")
    # PagingFiles "?:\pagefile.sys" puts the page file on the system drive.
    assert (swap.status, swap.value) == (FactStatus.PASS, True)


async def test_page_file_on_an_unprotected_volume_fails_swap() -> None:
    facts = await bitlocker(saved("manage_bde_c_on_d_off.txt"), paging="reg_paging_files_d.txt")
    assert facts["disk.root_encrypted"].status is FactStatus.PASS
    swap = facts["disk.swap_encrypted"]
    assert (swap.status, swap.value) == (FactStatus.FAIL, False)
    assert swap.detail == "D: protection: Protection Off, conversion: Fully Decrypted, 0% encrypted"


async def test_system_volume_still_encrypting_fails_root() -> None:
    facts = await bitlocker(saved("manage_bde_encrypting_two_volumes.txt"))
    root = facts["disk.root_encrypted"]
    assert (root.status, root.value) == (FactStatus.FAIL, False)
    assert root.detail == (
        "C: protection: Protection On, conversion: Encryption in Progress, 45.3% encrypted"
    )


async def test_french_windows_is_unknown() -> None:
    facts = await bitlocker(saved("manage_bde_fr.txt"))
    root = facts["disk.root_encrypted"]
    assert root.status is FactStatus.UNKNOWN
    assert root.detail == "unrecognised status: C: protection: not shown"


async def test_not_elevated_is_unknown() -> None:
    denied = CommandResult(-1, saved("manage_bde_not_admin.txt").decode(), "")
    facts = await bitlocker(denied)
    for fact in facts.values():
        assert fact.status is FactStatus.UNKNOWN
        assert fact.detail == (
            "manage-bde exited with status -1 (insufficient privileges): "
            "ERROR: An attempt to access a required resource was denied."
        )


async def test_manage_bde_missing_is_unknown() -> None:
    facts = {f.name: f for f in await collect_bitlocker(FakeRunner())}
    assert {f.detail for f in facts.values()} == {"manage-bde is not installed"}


async def test_no_page_file_counts_as_encrypted_swap() -> None:
    empty = (
        b"\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager"
        b"\\Memory Management\r\n    PagingFiles    REG_MULTI_SZ    \r\n\r\n"
    )
    runner = FakeRunner({MANAGE_BDE_ARGV: saved("manage_bde_on.txt"), PAGING: empty})
    facts = {f.name: f for f in await collect_bitlocker(runner)}
    assert (facts["disk.swap_encrypted"].value, facts["disk.swap_encrypted"].detail) == (
        True,
        "no page file",
    )
