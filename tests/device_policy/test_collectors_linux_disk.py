"""disk.root_encrypted and disk.swap_encrypted from lsblk and /proc/swaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeFiles, FakeRunner, UnparsableOutput
from device_policy.collectors.linux.disk import (
    LSBLK_ARGV,
    LSBLK_ARGV_OLD,
    collect_disk,
    lsblk_report,
    parse_proc_swaps,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "linux"


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


async def disk_facts(lsblk: str, swaps: str | None) -> dict[str, Fact]:
    runner = FakeRunner({LSBLK_ARGV: saved(lsblk)})
    files = FakeFiles({"/proc/swaps": saved(swaps)} if swaps else {})
    return {fact.name: fact for fact in await collect_disk(runner, files)}


def test_lsblk_sees_root_and_swap_inside_luks() -> None:
    report = lsblk_report(saved("lsblk_luks_lvm.json"))
    assert report.root_devices == ("vgubuntu-root",)
    assert report.root_encrypted is True
    assert report.root_crypt_devices == ("nvme0n1p3_crypt",)
    assert report.swap_devices == ("vgubuntu-swap_1",)
    assert report.swap_encrypted is True


def test_a_logical_volume_half_on_a_plain_disk_is_not_encrypted() -> None:
    report = lsblk_report(saved("lsblk_lvm_half_encrypted.json"))
    assert report.root_encrypted is False


def test_old_lsblk_with_a_single_mountpoint_column() -> None:
    report = lsblk_report(saved("lsblk_util_linux_2_36.json"))
    assert (report.root_encrypted, report.swap_encrypted) == (True, True)


@pytest.mark.parametrize("text", ["", "lsblk: unknown column: MOUNTPOINTS", '{"devices": []}'])
def test_lsblk_output_of_another_shape_is_refused(text: str) -> None:
    with pytest.raises(UnparsableOutput):
        lsblk_report(text)


def test_proc_swaps_lists_partitions_and_files() -> None:
    areas = parse_proc_swaps(saved("proc_swaps_zram_file.txt"))
    assert [(a.filename, a.type) for a in areas] == [
        ("/dev/zram0", "partition"),
        ("/var/swap/swapfile", "file"),
    ]
    assert parse_proc_swaps(saved("proc_swaps_none.txt")) == []


async def test_encrypted_laptop_passes_both() -> None:
    facts = await disk_facts("lsblk_luks_lvm.json", "proc_swaps_lvm.txt")
    root, swap = facts["disk.root_encrypted"], facts["disk.swap_encrypted"]
    assert (root.status, root.value) == (FactStatus.PASS, True)
    assert root.detail == "/ is on vgubuntu-root via dm-crypt nvme0n1p3_crypt"
    # /proc/swaps names the kernel device dm-2; lsblk's KNAME ties it to the LV.
    assert (swap.status, swap.value) == (FactStatus.PASS, True)
    assert root.source == swap.source == "lsblk"


async def test_plain_laptop_fails_both() -> None:
    facts = await disk_facts("lsblk_plain.json", "proc_swaps_plain.txt")
    assert facts["disk.root_encrypted"].status is FactStatus.FAIL
    assert facts["disk.root_encrypted"].value is False
    assert facts["disk.swap_encrypted"].status is FactStatus.FAIL
    assert facts["disk.swap_encrypted"].detail == "swap on sda3 is not encrypted"


async def test_zram_and_a_swap_file_on_the_encrypted_filesystem_pass() -> None:
    facts = await disk_facts("lsblk_btrfs_zram.json", "proc_swaps_zram_file.txt")
    assert facts["disk.root_encrypted"].status is FactStatus.PASS
    assert facts["disk.swap_encrypted"].status is FactStatus.PASS
    assert facts["disk.swap_encrypted"].value is True


async def test_swap_file_on_an_unencrypted_root_fails() -> None:
    swaps = "Filename\tType\tSize\tUsed\tPriority\n/swap.img   file\t2097148\t0\t-2\n"
    runner = FakeRunner({LSBLK_ARGV: saved("lsblk_vm_unencrypted.json")})
    facts = {f.name: f for f in await collect_disk(runner, FakeFiles({"/proc/swaps": swaps}))}
    assert facts["disk.swap_encrypted"].status is FactStatus.FAIL
    assert facts["disk.swap_encrypted"].detail == "swap on vda is not encrypted"


async def test_no_swap_at_all_counts_as_encrypted_and_says_so() -> None:
    facts = await disk_facts("lsblk_luks_lvm.json", "proc_swaps_none.txt")
    swap = facts["disk.swap_encrypted"]
    assert (swap.status, swap.value, swap.detail) == (FactStatus.PASS, True, "no swap in use")


async def test_unreadable_proc_swaps_is_unknown_but_root_is_still_judged() -> None:
    facts = await disk_facts("lsblk_luks_lvm.json", None)
    assert facts["disk.root_encrypted"].status is FactStatus.PASS
    swap = facts["disk.swap_encrypted"]
    assert swap.status is FactStatus.UNKNOWN and swap.value is None
    assert swap.detail == "cannot read /proc/swaps (No such file or directory)"


async def test_old_lsblk_rejects_mountpoints_and_the_collector_retries() -> None:
    runner = FakeRunner(
        {
            LSBLK_ARGV: CommandResult(1, "", "lsblk: unknown column: MOUNTPOINTS"),
            LSBLK_ARGV_OLD: saved("lsblk_util_linux_2_36.json"),
        }
    )
    files = FakeFiles({"/proc/swaps": saved("proc_swaps_dm1.txt")})
    facts = {f.name: f for f in await collect_disk(runner, files)}
    assert facts["disk.root_encrypted"].status is FactStatus.PASS
    assert facts["disk.swap_encrypted"].status is FactStatus.PASS
    assert runner.calls == [LSBLK_ARGV, LSBLK_ARGV_OLD]


async def test_lsblk_missing_makes_both_unknown() -> None:
    facts = {f.name: f for f in await collect_disk(FakeRunner(), FakeFiles())}
    for name in ("disk.root_encrypted", "disk.swap_encrypted"):
        assert facts[name].status is FactStatus.UNKNOWN
        assert facts[name].detail == "lsblk is not installed"


async def test_root_not_on_a_block_device_is_unknown() -> None:
    runner = FakeRunner(
        {LSBLK_ARGV: '{"blockdevices": [{"name": "loop0", "type": "loop", "mountpoints": ["/snap/core/1"]}]}'}
    )
    facts = {
        f.name: f
        for f in await collect_disk(runner, FakeFiles({"/proc/swaps": saved("proc_swaps_none.txt")}))
    }
    assert facts["disk.root_encrypted"].status is FactStatus.UNKNOWN
    assert facts["disk.root_encrypted"].detail == "the root filesystem is not on a block device"
