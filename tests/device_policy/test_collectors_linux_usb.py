"""usb.mass_storage_blocked from modprobe configuration, the kernel, and USBGuard."""

from __future__ import annotations

from pathlib import Path

from device_policy.collectors import CommandResult, FakeFiles, FakeRunner
from device_policy.collectors.linux.usb import (
    USBGUARD_RULES_ARGV,
    USBGUARD_TARGET_ARGV,
    cmdline_blocks,
    collect_usb_storage,
    parse_modprobe_conf,
    read_modprobe_config,
    usbguard_allows_storage,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "linux"
RELEASE = "6.1.0-18-amd64"


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def machine(
    *,
    conf: dict[str, str] | None = None,
    modules: str = "proc_modules_clean.txt",
    builtin: str = "modules_builtin.txt",
    cmdline: str = "proc_cmdline.txt",
) -> FakeFiles:
    files = FakeFiles(
        {
            "/proc/modules": saved(modules),
            "/proc/cmdline": saved(cmdline),
            "/proc/sys/kernel/osrelease": RELEASE + "\n",
            f"/lib/modules/{RELEASE}/modules.builtin": saved(builtin),
            "/lib/modprobe.d/systemd.conf": saved("modprobe_systemd.conf"),
        }
    )
    for path, name in (conf or {}).items():
        files.add(path, saved(name))
    return files


async def usb(files: FakeFiles, runner: FakeRunner | None = None) -> Fact:
    (fact,) = await collect_usb_storage(runner or FakeRunner(), files)
    return fact


def test_modprobe_config_spellings() -> None:
    cis = parse_modprobe_conf(saved("modprobe_cis_usb_storage.conf"))
    assert cis.install == {"usb_storage": "/bin/false"}
    assert cis.blocks() == "install"
    assert parse_modprobe_conf(saved("modprobe_blacklist_only.conf")).blocks() == "blacklist"
    assert parse_modprobe_conf(saved("modprobe_ubuntu_blacklist.conf")).blocks() is None
    # An install line that really loads the module is not a block.
    assert (
        parse_modprobe_conf("install usb-storage /sbin/modprobe --ignore-install usb-storage").blocks()
        is None
    )
    assert parse_modprobe_conf("install usb_storage \\\n  /bin/true\n").blocks() == "install"


def test_etc_overrides_a_vendor_file_of_the_same_name() -> None:
    files = machine(
        conf={
            "/usr/lib/modprobe.d/usb-storage.conf": "modprobe_cis_usb_storage.conf",
            "/etc/modprobe.d/usb-storage.conf": "modprobe_ubuntu_blacklist.conf",
        }
    )
    assert read_modprobe_config(files).blocks() is None


def test_kernel_command_line() -> None:
    assert cmdline_blocks(saved("proc_cmdline_module_blacklist.txt")) == "module_blacklist"
    assert cmdline_blocks(saved("proc_cmdline.txt")) is None


def test_usbguard_rules() -> None:
    assert usbguard_allows_storage(saved("usbguard_rules_generated.txt")) is False
    assert usbguard_allows_storage(saved("usbguard_rules_allow_storage.txt")) is True
    assert usbguard_allows_storage("7: allow") is True


async def test_cis_install_rule_passes() -> None:
    fact = await usb(machine(conf={"/etc/modprobe.d/usb-storage.conf": "modprobe_cis_usb_storage.conf"}))
    assert (fact.status, fact.value, fact.detail) == (
        FactStatus.PASS,
        True,
        "modprobe install rule refuses usb_storage",
    )


async def test_blacklist_passes_and_says_what_it_does() -> None:
    fact = await usb(machine(conf={"/etc/modprobe.d/usb.conf": "modprobe_blacklist_only.conf"}))
    assert fact.status is FactStatus.PASS
    assert fact.detail == "usb_storage is blacklisted (not loaded automatically)"


async def test_kernel_module_blacklist_passes() -> None:
    fact = await usb(machine(cmdline="proc_cmdline_module_blacklist.txt"))
    assert fact.status is FactStatus.PASS
    assert fact.detail == "kernel parameter module_blacklist blocks usb_storage"


async def test_rule_present_but_module_already_loaded_fails() -> None:
    files = machine(
        conf={"/etc/modprobe.d/usb.conf": "modprobe_cis_usb_storage.conf"},
        modules="proc_modules_usb_storage_loaded.txt",
    )
    fact = await usb(files)
    assert (fact.status, fact.value) == (FactStatus.FAIL, False)
    assert fact.detail == "the usb_storage module is loaded; usbguard is not installed"


async def test_rule_present_but_driver_built_in_fails() -> None:
    files = machine(
        conf={"/etc/modprobe.d/usb.conf": "modprobe_cis_usb_storage.conf"},
        builtin="modules_builtin_usb_storage.txt",
    )
    fact = await usb(files)
    assert fact.status is FactStatus.FAIL
    assert fact.detail == "usb_storage is built into the kernel; usbguard is not installed"


async def test_no_rule_fails() -> None:
    fact = await usb(machine(conf={"/etc/modprobe.d/blacklist.conf": "modprobe_ubuntu_blacklist.conf"}))
    assert (fact.status, fact.value) == (FactStatus.FAIL, False)
    assert fact.detail == "no modprobe rule blocks usb_storage; usbguard is not installed"


async def test_usbguard_blocking_unknown_devices_passes() -> None:
    runner = FakeRunner(
        {
            USBGUARD_TARGET_ARGV: "block\n",
            USBGUARD_RULES_ARGV: saved("usbguard_rules_generated.txt"),
        }
    )
    fact = await usb(machine(), runner)
    assert (fact.status, fact.source) == (FactStatus.PASS, "usbguard")
    assert fact.detail == "USBGuard blocks devices no rule allows; no modprobe rule blocks usb_storage"


async def test_usbguard_rule_allowing_storage_fails() -> None:
    runner = FakeRunner(
        {
            USBGUARD_TARGET_ARGV: "block\n",
            USBGUARD_RULES_ARGV: saved("usbguard_rules_allow_storage.txt"),
        }
    )
    fact = await usb(machine(), runner)
    assert fact.status is FactStatus.FAIL
    assert fact.detail == ("no modprobe rule blocks usb_storage; a USBGuard rule allows mass-storage devices")


async def test_usbguard_unreachable_is_unknown() -> None:
    runner = FakeRunner({USBGUARD_TARGET_ARGV: CommandResult(1, "", "IPC connection failure!")})
    fact = await usb(machine(), runner)
    assert fact.status is FactStatus.UNKNOWN
    assert fact.detail == (
        "no modprobe rule blocks usb_storage; USBGuard state unknown: "
        "usbguard exited with status 1: IPC connection failure!"
    )


async def test_unreadable_builtin_list_is_unknown() -> None:
    files = FakeFiles({"/proc/modules": "", "/proc/cmdline": "quiet", "/proc/sys/kernel/osrelease": RELEASE})
    fact = await usb(files)
    assert fact.status is FactStatus.UNKNOWN
    assert fact.detail == f"cannot read modules.builtin for kernel {RELEASE}"
