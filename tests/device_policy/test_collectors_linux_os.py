"""os.id, os.version from os-release, and os.pending_security_updates from apt."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeFiles, FakeRunner, UnparsableOutput
from device_policy.collectors.linux.osrelease import collect_os_release, parse_os_release
from device_policy.collectors.linux.updates import (
    APT_ARGV,
    collect_security_updates,
    parse_apt_upgrade,
)
from device_policy.facts import FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "linux"


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_os_release_fields() -> None:
    release = parse_os_release(saved("os_release_ubuntu2204.txt"))
    assert (release.id, release.version_id, release.version_codename, release.id_like) == (
        "ubuntu",
        "22.04",
        "jammy",
        ("debian",),
    )
    assert release.pretty_name == "Ubuntu 22.04.4 LTS"


async def test_debian_12() -> None:
    files = FakeFiles({"/etc/os-release": saved("os_release_debian12.txt")})
    facts = {f.name: f for f in await collect_os_release(files)}
    assert (facts["os.id"].value, facts["os.version"].value) == ("debian", "12")
    assert facts["os.id"].status is facts["os.version"].status is FactStatus.PASS
    assert facts["os.id"].detail == "Debian GNU/Linux 12 (bookworm)"


async def test_testing_release_uses_the_codename_and_says_so() -> None:
    files = FakeFiles({"/usr/lib/os-release": saved("os_release_debian_sid.txt")})
    facts = {f.name: f for f in await collect_os_release(files)}
    assert facts["os.version"].value == "trixie"
    assert facts["os.version"].detail == "no VERSION_ID (rolling or testing release); VERSION_CODENAME used"


async def test_no_os_release_is_unknown() -> None:
    facts = {f.name: f for f in await collect_os_release(FakeFiles())}
    assert facts["os.id"].status is FactStatus.UNKNOWN
    assert facts["os.id"].detail == (
        "cannot read os-release (/etc/os-release: No such file or directory; "
        "/usr/lib/os-release: No such file or directory)"
    )


def test_apt_simulation_on_debian_12() -> None:
    # Saved from `apt-get -s dist-upgrade` on Debian 12; 66 of the 113 packages come from
    # Debian-Security, some only there, some in both the point release and security.
    upgrades = parse_apt_upgrade(saved("apt_get_s_dist_upgrade_debian12.txt"))
    assert (upgrades.upgradable, upgrades.security) == (113, 66)
    assert "libgcrypt20" in upgrades.security_packages
    assert "base-files" not in upgrades.security_packages


def test_apt_list_upgradable_agrees_with_the_simulation() -> None:
    upgrades = parse_apt_upgrade(saved("apt_list_upgradable_debian12.txt"))
    assert (upgrades.upgradable, upgrades.security) == (113, 66)


def test_ubuntu_kernel_security_update_arrives_as_new_packages() -> None:
    upgrades = parse_apt_upgrade(saved("apt_get_s_upgrade_ubuntu2204.txt"))
    assert (upgrades.upgradable, upgrades.security) == (10, 9)
    assert "linux-image-5.15.0-105-generic" in upgrades.security_packages
    assert "snapd" not in upgrades.security_packages


def test_up_to_date_system() -> None:
    upgrades = parse_apt_upgrade(saved("apt_get_s_up_to_date.txt"))
    assert (upgrades.upgradable, upgrades.security) == (0, 0)


def test_apt_error_text_is_refused() -> None:
    with pytest.raises(UnparsableOutput):
        parse_apt_upgrade("E: Could not open lock file /var/lib/dpkg/lock-frontend\n")


async def test_pending_security_updates_fail() -> None:
    runner = FakeRunner({APT_ARGV: saved("apt_get_s_upgrade_ubuntu2204.txt")})
    (fact,) = await collect_security_updates(runner)
    assert (fact.status, fact.value) == (FactStatus.FAIL, 9)
    assert fact.detail is not None and fact.detail.startswith("9 security of 10 pending upgrades: libssl3, ")


async def test_no_pending_updates_pass() -> None:
    (fact,) = await collect_security_updates(FakeRunner({APT_ARGV: saved("apt_get_s_up_to_date.txt")}))
    assert (fact.status, fact.value) == (FactStatus.PASS, 0)


async def test_non_debian_system_is_unknown() -> None:
    (fact,) = await collect_security_updates(FakeRunner())
    assert (fact.status, fact.detail) == (FactStatus.UNKNOWN, "apt-get is not installed")


async def test_broken_apt_is_unknown() -> None:
    broken = CommandResult(100, "", "E: The package lists or status file could not be parsed or opened.\n")
    (fact,) = await collect_security_updates(FakeRunner({APT_ARGV: broken}))
    assert fact.status is FactStatus.UNKNOWN
    assert fact.detail == (
        "apt-get exited with status 100: E: The package lists or status file could not be parsed or opened."
    )
