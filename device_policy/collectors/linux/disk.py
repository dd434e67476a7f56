"""Disk encryption on Linux: is ``/`` on dm-crypt, and is every swap area?

Runs ``lsblk --json -o NAME,KNAME,TYPE,FSTYPE,MOUNTPOINTS`` and reads ``/proc/swaps``.
lsblk prints the device tree (disk → partition → crypt → LVM…); a filesystem is
encrypted when every path from a disk down to it passes through a ``crypt`` device
(a logical volume spanning an encrypted and a plain disk is *not* encrypted). Swap
files count as encrypted when the filesystem holding them is; zram swap never reaches
a disk and counts as encrypted; no swap at all is reported as ``true``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.files import FileReader, read_text
from device_policy.collectors.judge import judged, run_problem, unknown, unknown_all
from device_policy.collectors.names import DISK_ROOT_ENCRYPTED, DISK_SWAP_ENCRYPTED
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

LSBLK_ARGV = ("lsblk", "--json", "-o", "NAME,KNAME,TYPE,FSTYPE,MOUNTPOINTS")
# util-linux before 2.37 (Debian 11) has no MOUNTPOINTS column, only the single MOUNTPOINT.
LSBLK_ARGV_OLD = ("lsblk", "--json", "-o", "NAME,KNAME,TYPE,FSTYPE,MOUNTPOINT")
PROC_SWAPS = "/proc/swaps"
SWAP_MOUNT = "[SWAP]"


@dataclass(frozen=True)
class BlockDevice:
    """One node of lsblk's device tree."""

    name: str
    type: str
    fstype: str | None = None
    kname: str | None = None
    mountpoints: tuple[str, ...] = ()
    children: tuple[BlockDevice, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class SwapArea:
    """One line of /proc/swaps."""

    filename: str
    type: str


@dataclass(frozen=True)
class Encryption:
    """Whether a set of devices is encrypted, and which devices decided it."""

    encrypted: bool
    devices: tuple[str, ...]
    crypt_devices: tuple[str, ...]
    plain_devices: tuple[str, ...]


@dataclass(frozen=True)
class LsblkReport:
    """What ``parse("lsblk", …)`` returns: lsblk's view of root and swap devices."""

    root_devices: tuple[str, ...]
    root_encrypted: bool | None
    root_crypt_devices: tuple[str, ...]
    swap_devices: tuple[str, ...]
    swap_encrypted: bool | None


def parse_lsblk(text: str | bytes) -> list[BlockDevice]:
    """Parse ``lsblk --json`` output (``MOUNTPOINTS`` list or older ``MOUNTPOINT``)."""
    try:
        data = json.loads(clean_text(text))
    except json.JSONDecodeError as exc:
        raise UnparsableOutput("lsblk", f"not JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("blockdevices"), list):
        raise UnparsableOutput("lsblk", 'no "blockdevices" list')
    return [_device(item) for item in data["blockdevices"]]


def _device(item: object) -> BlockDevice:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise UnparsableOutput("lsblk", "a block device has no name")
    raw_mounts = item.get("mountpoints", [item.get("mountpoint")])
    if not isinstance(raw_mounts, list):
        raise UnparsableOutput("lsblk", "mountpoints is not a list")
    children = item.get("children", [])
    if not isinstance(children, list):
        raise UnparsableOutput("lsblk", "children is not a list")
    return BlockDevice(
        name=item["name"],
        type=str(item.get("type") or ""),
        fstype=item.get("fstype") if isinstance(item.get("fstype"), str) else None,
        kname=item.get("kname") if isinstance(item.get("kname"), str) else None,
        mountpoints=tuple(m for m in raw_mounts if isinstance(m, str)),
        children=tuple(_device(child) for child in children),
    )


def _paths(devices: list[BlockDevice]) -> Iterator[tuple[BlockDevice, ...]]:
    """Every path from a top-level device down to each node (a node may have several)."""
    stack: list[tuple[BlockDevice, ...]] = [(device,) for device in devices]
    while stack:
        path = stack.pop()
        yield path
        stack.extend((*path, child) for child in path[-1].children)


def encryption_of(devices: list[BlockDevice], wanted: set[str]) -> Encryption | None:
    """Encryption of the nodes whose name or kname is in ``wanted``; ``None`` if none exist."""
    names: list[str] = []
    crypts: list[str] = []
    plain: list[str] = []
    for path in _paths(devices):
        node = path[-1]
        if node.name not in wanted and node.kname not in wanted:
            continue
        names.append(node.name)
        crypt = [d.name for d in path if d.type == "crypt"]
        if crypt:
            crypts.extend(crypt)
        elif node.name.startswith("zram"):
            crypts.append(node.name)  # compressed RAM: never written to a disk
        else:
            plain.append(node.name)
    if not names:
        return None
    return Encryption(
        encrypted=not plain,
        devices=tuple(dict.fromkeys(names)),
        crypt_devices=tuple(dict.fromkeys(crypts)),
        plain_devices=tuple(dict.fromkeys(plain)),
    )


def mounted_at(devices: list[BlockDevice], mountpoint: str) -> set[str]:
    """Names of the devices mounted at ``mountpoint``."""
    return {p[-1].name for p in _paths(devices) if mountpoint in p[-1].mountpoints}


def device_holding(devices: list[BlockDevice], path: str) -> set[str]:
    """Names of the devices whose filesystem holds ``path`` (longest mountpoint prefix)."""
    best = ""
    for p in _paths(devices):
        for mount in p[-1].mountpoints:
            if mount.startswith("/") and _under(path, mount) and len(mount) > len(best):
                best = mount
    return mounted_at(devices, best) if best else set()


def _under(path: str, mount: str) -> bool:
    return mount == "/" or path == mount or path.startswith(mount.rstrip("/") + "/")


def lsblk_report(text: str | bytes) -> LsblkReport:
    """lsblk's own view of root and swap (swap files need /proc/swaps as well)."""
    devices = parse_lsblk(text)
    root = encryption_of(devices, mounted_at(devices, "/"))
    swap = encryption_of(devices, mounted_at(devices, SWAP_MOUNT))
    return LsblkReport(
        root_devices=root.devices if root else (),
        root_encrypted=root.encrypted if root else None,
        root_crypt_devices=root.crypt_devices if root else (),
        swap_devices=swap.devices if swap else (),
        swap_encrypted=swap.encrypted if swap else None,
    )


def parse_proc_swaps(text: str | bytes) -> list[SwapArea]:
    """Parse /proc/swaps (a header line, then one line per active swap area)."""
    lines = [line for line in clean_text(text).splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Filename"):
        raise UnparsableOutput("/proc/swaps", "no Filename header")
    areas = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 2:
            raise UnparsableOutput("/proc/swaps", "a line has fewer than two fields")
        # The kernel escapes blanks in file names as octal (\040).
        filename = fields[0].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        areas.append(SwapArea(filename=filename, type=fields[1]))
    return areas


def swap_encryption(devices: list[BlockDevice], areas: list[SwapArea]) -> Encryption | str:
    """Encryption of all active swap areas, or why it cannot be told."""
    names: list[str] = []
    crypts: list[str] = []
    plain: list[str] = []
    for area in areas:
        if area.type == "file":
            holder = device_holding(devices, area.filename)
            what = f"the filesystem holding swap file {area.filename}"
        else:
            base = posixpath.basename(area.filename)
            holder = {base}
            what = f"swap device {base}"
        found = encryption_of(devices, holder) if holder else None
        if found is None:
            if area.type != "file" and posixpath.basename(area.filename).startswith("zram"):
                crypts.append(posixpath.basename(area.filename))
                names.append(posixpath.basename(area.filename))
                continue
            return f"{what} is not in lsblk's output"
        names.extend(found.devices)
        crypts.extend(found.crypt_devices)
        plain.extend(found.plain_devices)
    return Encryption(
        encrypted=not plain,
        devices=tuple(dict.fromkeys(names)),
        crypt_devices=tuple(dict.fromkeys(crypts)),
        plain_devices=tuple(dict.fromkeys(plain)),
    )


async def collect_disk(runner: CommandRunner, files: FileReader) -> list[Fact]:
    """Facts ``disk.root_encrypted`` and ``disk.swap_encrypted``."""
    result = await runner.run(LSBLK_ARGV, timeout=10)
    if result.returncode != 0 and "unknown column" in result.stderr:
        result = await runner.run(LSBLK_ARGV_OLD, timeout=10)
    problem = run_problem(result, "lsblk")
    names = (DISK_ROOT_ENCRYPTED, DISK_SWAP_ENCRYPTED)
    if problem:
        return unknown_all(names, problem, source="lsblk")
    try:
        devices = parse_lsblk(result.stdout)
    except UnparsableOutput as exc:
        return unknown_all(names, exc.detail, source="lsblk")
    return [_root_fact(devices), _swap_fact(devices, files)]


def _root_fact(devices: list[BlockDevice]) -> Fact:
    root = encryption_of(devices, mounted_at(devices, "/"))
    if root is None:
        return unknown(DISK_ROOT_ENCRYPTED, "the root filesystem is not on a block device", source="lsblk")
    if root.encrypted:
        detail = f"/ is on {', '.join(root.devices)} via dm-crypt {', '.join(root.crypt_devices)}"
    else:
        detail = f"/ is on {', '.join(root.devices)} with no dm-crypt layer below it"
    return judged(DISK_ROOT_ENCRYPTED, root.encrypted, root.encrypted, source="lsblk", detail=detail)


def _swap_fact(devices: list[BlockDevice], files: FileReader) -> Fact:
    try:
        areas = parse_proc_swaps(read_text(files, PROC_SWAPS))
    except OSError as exc:
        return unknown(
            DISK_SWAP_ENCRYPTED,
            f"cannot read {PROC_SWAPS} ({exc.strerror or type(exc).__name__})",
            source="lsblk",
        )
    except UnparsableOutput as exc:
        return unknown(DISK_SWAP_ENCRYPTED, exc.detail, source="lsblk")
    if not areas:
        return judged(DISK_SWAP_ENCRYPTED, True, True, source="lsblk", detail="no swap in use")
    swap = swap_encryption(devices, areas)
    if isinstance(swap, str):
        return unknown(DISK_SWAP_ENCRYPTED, swap, source="lsblk")
    if swap.encrypted:
        detail = f"swap on {', '.join(swap.devices)} is encrypted or in RAM"
    else:
        detail = f"swap on {', '.join(swap.plain_devices)} is not encrypted"
    return judged(DISK_SWAP_ENCRYPTED, swap.encrypted, swap.encrypted, source="lsblk", detail=detail)
