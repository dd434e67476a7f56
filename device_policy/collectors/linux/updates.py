"""Pending security updates on Debian-family Linux: a simulated ``apt-get dist-upgrade``.

``apt-get -s dist-upgrade`` prints one ``Inst`` line per package it would install, with
the archives offering the new version; a package counts as a security update when one
of them is a security pocket (``Debian-Security:12/stable-security``,
``Ubuntu:22.04/jammy-security``). dist-upgrade rather than upgrade, because security
kernels arrive as new packages that plain upgrade holds back. The count reflects the
last ``apt-get update``; it needs no root. ``apt list --upgradable`` output is parsed too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.judge import judged, run_problem, unknown
from device_policy.collectors.names import OS_PENDING_SECURITY_UPDATES
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

APT_ARGV = ("apt-get", "-s", "dist-upgrade")
# "Inst pkg [old] (new Origin:Release/suite, Origin:Release/suite [arch])"; [old] is absent
# for a package being newly installed.
_INST = re.compile(r"^Inst (\S+)(?: \[[^\]]*\])? \((\S+) ([^)]*)\)")
# "pkg/suite1,suite2 version arch [upgradable from: old]"
_UPGRADABLE = re.compile(r"^([^/\s]+)/(\S+) (\S+) (\S+)(?: \[upgradable from: [^\]]*\])?\s*$")
_SUMMARY = re.compile(r"^\d+ (?:upgraded|packages? upgraded)", re.MULTILINE)


@dataclass(frozen=True)
class AptUpgrades:
    """What ``parse("apt-upgrade", …)`` returns."""

    upgradable: int
    security: int
    security_packages: tuple[str, ...]


def _is_security(archives: str) -> bool:
    return "-security" in archives or "Debian-Security" in archives


def parse_apt_upgrade(text: str | bytes) -> AptUpgrades:
    """Parse ``apt-get -s upgrade|dist-upgrade`` or ``apt list --upgradable``."""
    text = clean_text(text)
    packages: dict[str, bool] = {}
    recognised = False
    for line in text.splitlines():
        if (inst := _INST.match(line)) is not None:
            recognised = True
            name = inst.group(1)
            packages[name] = packages.get(name, False) or _is_security(inst.group(3))
        elif (listed := _UPGRADABLE.match(line)) is not None:
            recognised = True
            name = listed.group(1)
            packages[name] = packages.get(name, False) or _is_security(listed.group(2))
        elif line.startswith("Listing...") or _SUMMARY.search(line):
            recognised = True
    if not recognised:
        raise UnparsableOutput("apt-get", "no Inst lines and no summary line")
    security = tuple(sorted(name for name, is_security in packages.items() if is_security))
    return AptUpgrades(upgradable=len(packages), security=len(security), security_packages=security)


async def collect_security_updates(runner: CommandRunner) -> list[Fact]:
    """Fact ``os.pending_security_updates``."""
    name = OS_PENDING_SECURITY_UPDATES
    result = await runner.run(APT_ARGV, timeout=60)
    problem = run_problem(result, "apt-get")
    if problem:
        return [unknown(name, problem, source="apt-get")]
    try:
        upgrades = parse_apt_upgrade(result.stdout)
    except UnparsableOutput as exc:
        return [unknown(name, exc.detail, source="apt-get")]
    detail = f"{upgrades.security} security of {upgrades.upgradable} pending upgrades"
    if upgrades.security_packages:
        shown = ", ".join(upgrades.security_packages[:10])
        more = "…" if len(upgrades.security_packages) > 10 else ""
        detail += f": {shown}{more}"
    return [judged(name, upgrades.security, upgrades.security == 0, source="apt-get", detail=detail)]
