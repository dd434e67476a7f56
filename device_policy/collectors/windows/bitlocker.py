"""Disk encryption on Windows: ``manage-bde -status`` for the system volume and the page file.

manage-bde lists every volume with its Conversion Status, Percentage Encrypted and
Protection Status. The system volume counts as encrypted when protection is on and
conversion is complete ("Fully Encrypted", or "Used Space Only Encrypted" as Windows 11
encrypts new disks). Swap is the page file: its volumes come from the registry value
``PagingFiles`` (``?:`` means the system drive). English and German labels are
recognised; any other language, or a value not in the table, gives ``unknown`` — never
a guess (a German volume can read "Verschlüsselung wird durchgeführt" at "100,0 %").
manage-bde needs an elevated agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.invoke import Problem, run_and_parse
from device_policy.collectors.judge import judged, unknown, unknown_all
from device_policy.collectors.names import DISK_ROOT_ENCRYPTED, DISK_SWAP_ENCRYPTED
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text, split_colon
from device_policy.collectors.windows.regquery import read_registry
from device_policy.facts import Fact

MANAGE_BDE_ARGV = ("manage-bde", "-status")
MEMORY_MANAGEMENT_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management"
SOURCE = "manage-bde"

_VOLUME = re.compile(r'^Volume\s+"?(?P<drive>[A-Za-z]:)"?\s*(?P<label>\[.*\])?\s*$')
# Field labels per language, mapped to one name.
_FIELDS = {
    "conversion status": "conversion",
    "konvertierungsstatus": "conversion",
    "percentage encrypted": "percentage",
    "verschlüsselt (prozent)": "percentage",
    "encryption method": "method",
    "verschlüsselungsmethode": "method",
    "protection status": "protection",
    "schutzstatus": "protection",
    "lock status": "lock",
    "sperrungsstatus": "lock",
}
_PROTECTION = {
    "protection on": "on",
    "protection off": "off",
    "der schutz ist aktiviert": "on",
    "der schutz ist deaktiviert": "off",
}
_CONVERSION = {
    "fully encrypted": True,
    "used space only encrypted": True,
    "fully decrypted": False,
    "encryption in progress": False,
    "decryption in progress": False,
    "encryption paused": False,
    "decryption paused": False,
    "vollständig verschlüsselt": True,
    "nur verwendeter speicherplatz verschlüsselt": True,
    "vollständig entschlüsselt": False,
    "verschlüsselung wird durchgeführt": False,
    "entschlüsselung wird durchgeführt": False,
}


@dataclass(frozen=True)
class BitLockerVolume:
    """One volume in ``manage-bde -status``."""

    volume: str
    label: str | None
    conversion_status: str | None
    fully_encrypted: bool | None
    percentage_encrypted: float | None
    encryption_method: str | None
    protection_status: str | None
    protection: str | None
    lock_status: str | None

    @property
    def encrypted(self) -> bool | None:
        """Protection on and conversion complete; ``None`` when a label was not recognised."""
        if self.protection is None:
            return None
        if self.protection == "off":
            return False
        if self.conversion_status is None and self.percentage_encrypted is not None:
            return self.percentage_encrypted >= 100.0
        # An unrecognised conversion status stays unknown: 100 % can still be "in progress".
        return self.fully_encrypted


@dataclass(frozen=True)
class BitLockerStatus:
    """What ``parse("manage-bde", …)`` returns."""

    volumes: tuple[BitLockerVolume, ...]

    def volume(self, drive: str) -> BitLockerVolume | None:
        """The volume with drive letter ``drive`` ("C:")."""
        for volume in self.volumes:
            if volume.volume.upper() == drive.upper():
                return volume
        return None


def _normalise(value: str) -> str:
    return " ".join(value.strip().rstrip(".").lower().split())


def _protection(raw: str) -> str | None:
    value = _normalise(raw)
    if value in _PROTECTION:
        return _PROTECTION[value]
    # "Protection Off (1 reboots left)", "Der Schutz ist deaktiviert (angehalten)": suspended,
    # so not protecting now.
    if value.startswith(("protection off (", "der schutz ist deaktiviert (")):
        return "off"
    return None


def _percentage(raw: str) -> float | None:
    match = re.match(r"^\s*(\d+(?:[.,]\d+)?)\s*%", raw)
    return float(match.group(1).replace(",", ".")) if match else None


def parse_manage_bde(text: str | bytes) -> BitLockerStatus:
    """Parse ``manage-bde -status`` (every volume listed)."""
    volumes: list[BitLockerVolume] = []
    current: dict[str, str] | None = None
    drive = label = None

    def close() -> None:
        if current is not None and drive is not None:
            volumes.append(_volume(drive, label, current))

    for line in clean_text(text).splitlines():
        header = _VOLUME.match(line.strip())
        if header:
            close()
            drive, current = header.group("drive").upper(), {}
            label = (header.group("label") or "").strip("[]") or None
            continue
        pair = split_colon(line) if current is not None else None
        if pair and current is not None:
            field = _FIELDS.get(_normalise(pair[0]))
            if field:
                current[field] = pair[1]
    close()
    if not volumes:
        raise UnparsableOutput("manage-bde", "no volume listed")
    return BitLockerStatus(tuple(volumes))


def _volume(drive: str, label: str | None, fields: dict[str, str]) -> BitLockerVolume:
    conversion = fields.get("conversion")
    protection_raw = fields.get("protection")
    return BitLockerVolume(
        volume=drive,
        label=label,
        conversion_status=conversion,
        fully_encrypted=_CONVERSION.get(_normalise(conversion)) if conversion else None,
        percentage_encrypted=_percentage(fields.get("percentage", "")),
        encryption_method=fields.get("method"),
        protection_status=protection_raw,
        protection=_protection(protection_raw) if protection_raw else None,
        lock_status=fields.get("lock"),
    )


def _describe(volume: BitLockerVolume) -> str:
    parts = [f"{volume.volume} protection: {volume.protection_status or 'not shown'}"]
    if volume.conversion_status:
        parts.append(f"conversion: {volume.conversion_status}")
    if volume.percentage_encrypted is not None:
        parts.append(f"{volume.percentage_encrypted:g}% encrypted")
    return ", ".join(parts)


def _volume_fact(name: str, status: BitLockerStatus, drive: str, what: str) -> Fact:
    volume = status.volume(drive)
    if volume is None:
        return unknown(name, f"manage-bde does not list {what} {drive}", source=SOURCE)
    encrypted = volume.encrypted
    if encrypted is None:
        return unknown(name, "unrecognised status: " + _describe(volume), source=SOURCE)
    return judged(name, encrypted, encrypted, source=SOURCE, detail=_describe(volume))


async def paging_drives(runner: CommandRunner, system_drive: str) -> list[str] | Problem:
    """Drives holding a page file, from ``PagingFiles`` (empty list: no page file)."""
    answer = await read_registry(runner, MEMORY_MANAGEMENT_KEY, "PagingFiles")
    if answer.problem:
        return Problem(answer.problem)
    data = answer.query.get("PagingFiles") if answer.query else None
    entries = data if isinstance(data, list) else [data] if isinstance(data, str) and data else []
    drives = []
    for entry in entries:
        drive = entry.strip()[:2].upper()
        drives.append(system_drive.upper() if drive == "?:" else drive)
    return list(dict.fromkeys(drives))


async def collect_bitlocker(runner: CommandRunner, *, system_drive: str = "C:") -> list[Fact]:
    """Facts ``disk.root_encrypted`` and ``disk.swap_encrypted``."""
    status = await run_and_parse(runner, MANAGE_BDE_ARGV, parse_manage_bde, tool=SOURCE, timeout=30)
    if isinstance(status, Problem):
        return unknown_all((DISK_ROOT_ENCRYPTED, DISK_SWAP_ENCRYPTED), status, source=SOURCE)
    root = _volume_fact(DISK_ROOT_ENCRYPTED, status, system_drive, "the system volume")
    drives = await paging_drives(runner, system_drive)
    if isinstance(drives, Problem):
        return [root, unknown(DISK_SWAP_ENCRYPTED, f"page file location: {drives}", source=SOURCE)]
    if not drives:
        return [root, judged(DISK_SWAP_ENCRYPTED, True, True, source=SOURCE, detail="no page file")]
    facts = [_volume_fact(DISK_SWAP_ENCRYPTED, status, d, "page-file volume") for d in drives]
    # One unencrypted page-file volume fails the fact; an unreadable one makes it unknown.
    for status_wanted in ("fail", "unknown"):
        for fact in facts:
            if fact.status == status_wanted:
                return [root, fact]
    return [root, facts[0]]
