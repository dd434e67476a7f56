"""USB mass storage on Linux: can the ``usb_storage`` driver load, or does USBGuard stop sticks?

The driver is blocked when a modprobe rule stops it (``install usb-storage /bin/false`` or
``/bin/true`` in any ``modprobe.d`` file, or ``blacklist usb-storage``, which stops the
automatic load when a stick is plugged in), or the kernel command line says
``module_blacklist=usb_storage`` — and it is neither loaded now (``/proc/modules``) nor
built into the kernel (``modules.builtin``), where no modprobe rule reaches it.
Failing that, USBGuard counts when its implicit policy blocks unknown devices and no
``allow`` rule admits interface class 08 (mass storage) or admits devices unpinned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from device_policy.collectors.files import FileReader, read_text
from device_policy.collectors.judge import judged, run_problem, unknown
from device_policy.collectors.names import USB_MASS_STORAGE_BLOCKED
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text
from device_policy.facts import Fact

MODULE = "usb_storage"
# Earlier directories win when two hold a file of the same name (modprobe.d(5)).
MODPROBE_DIRS = (
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
)
PROC_MODULES = "/proc/modules"
PROC_CMDLINE = "/proc/cmdline"
KERNEL_RELEASE = "/proc/sys/kernel/osrelease"
USBGUARD_TARGET_ARGV = ("usbguard", "get-parameter", "ImplicitPolicyTarget")
USBGUARD_RULES_ARGV = ("usbguard", "list-rules")
_BLOCKING_COMMANDS = {"false", "true"}


def module_name(name: str) -> str:
    """Module names treat ``-`` and ``_`` alike; compare them in one spelling."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class ModprobeConfig:
    """What ``parse("modprobe-conf", …)`` returns: blacklists and install overrides."""

    blacklisted: tuple[str, ...] = ()
    install: dict[str, str] = field(default_factory=dict)

    def blocks(self, module: str = MODULE) -> str | None:
        """How the config blocks ``module`` ("install" or "blacklist"), or ``None``."""
        command = self.install.get(module)
        if command is not None and _blocking_command(command):
            return "install"
        if module in self.blacklisted:
            return "blacklist"
        return None


def _blocking_command(command: str) -> bool:
    words = command.split()
    return bool(words) and words[0].rsplit("/", 1)[-1] in _BLOCKING_COMMANDS


def parse_modprobe_conf(text: str | bytes) -> ModprobeConfig:
    """Parse modprobe.d configuration (one file, or several concatenated)."""
    blacklisted: list[str] = []
    install: dict[str, str] = {}
    for line in _logical_lines(clean_text(text)):
        words = line.split()
        if len(words) >= 2 and words[0] == "blacklist":
            blacklisted.append(module_name(words[1]))
        elif len(words) >= 3 and words[0] == "install":
            # The first install line for a module wins, as in modprobe.
            install.setdefault(module_name(words[1]), " ".join(words[2:]))
    return ModprobeConfig(tuple(dict.fromkeys(blacklisted)), install)


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    if pending:
        lines.append(pending)
    return [line.strip() for line in lines if line.strip()]


def cmdline_blocks(cmdline: str, module: str = MODULE) -> str | None:
    """Which kernel parameter blocks ``module`` ("module_blacklist"…), or ``None``."""
    for param in cmdline.split():
        key, _, value = param.partition("=")
        if key in ("module_blacklist", "modprobe.blacklist") and module in {
            module_name(v) for v in value.split(",")
        }:
            return key
    return None


def loaded_modules(text: str) -> set[str]:
    """Module names listed in /proc/modules."""
    return {line.split()[0] for line in clean_text(text).splitlines() if line.strip()}


def builtin_modules(text: str) -> set[str]:
    """Module names listed in modules.builtin (``kernel/drivers/usb/storage/usb-storage.ko``)."""
    names = set()
    for line in clean_text(text).splitlines():
        base = line.strip().rsplit("/", 1)[-1]
        if base.endswith(".ko"):
            names.add(module_name(base[:-3]))
    return names


def read_modprobe_config(files: FileReader) -> ModprobeConfig:
    """All modprobe.d files in effect, merged in the order modprobe reads them."""
    chosen: dict[str, str] = {}
    for directory in MODPROBE_DIRS:
        try:
            names = files.list_dir(directory)
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf"):
                chosen.setdefault(name, f"{directory}/{name}")
    texts = []
    for name in sorted(chosen):
        try:
            texts.append(read_text(files, chosen[name]))
        except OSError:
            continue  # unreadable files are ignored by modprobe as well
    return parse_modprobe_conf("\n".join(texts))


@dataclass(frozen=True)
class UsbGuardVerdict:
    """Whether USBGuard keeps mass storage out, and why."""

    blocks: bool | None
    reason: str


_INTERFACE = re.compile(
    r"with-interface\s+(?:(?:one-of|all-of|equals|none-of)\s*)?\{([^}]*)\}|with-interface\s+(\S+)"
)


def usbguard_allows_storage(rules: str) -> bool:
    """Whether some ``allow`` rule admits mass-storage interfaces or any unpinned device."""
    for line in clean_text(rules).splitlines():
        rule = line.split(":", 1)[1].strip() if re.match(r"^\s*\d+:", line) else line.strip()
        if not rule.startswith("allow"):
            continue
        interfaces: list[str] = []
        for match in _INTERFACE.finditer(rule):
            interfaces.extend((match.group(1) or match.group(2) or "").split())
        if any(i.startswith(("08:", "*:")) for i in interfaces):
            return True
        if not interfaces and "hash" not in rule and "serial" not in rule:
            return True
    return False


async def usbguard_verdict(runner: CommandRunner) -> UsbGuardVerdict:
    """Ask USBGuard about its implicit policy and rules."""
    target = await runner.run(USBGUARD_TARGET_ARGV, timeout=10)
    problem = run_problem(target, "usbguard")
    if problem:
        return UsbGuardVerdict(False if "not installed" in problem else None, problem)
    policy = target.stdout.strip()
    if policy not in ("block", "reject"):
        return UsbGuardVerdict(False, f"USBGuard implicit policy is {policy or 'empty'}")
    rules = await runner.run(USBGUARD_RULES_ARGV, timeout=10)
    problem = run_problem(rules, "usbguard")
    if problem:
        return UsbGuardVerdict(None, problem)
    if usbguard_allows_storage(rules.stdout):
        return UsbGuardVerdict(False, "a USBGuard rule allows mass-storage devices")
    return UsbGuardVerdict(True, f"USBGuard {policy}s devices no rule allows")


async def collect_usb_storage(runner: CommandRunner, files: FileReader) -> list[Fact]:
    """Fact ``usb.mass_storage_blocked``."""
    name = USB_MASS_STORAGE_BLOCKED
    try:
        loaded = MODULE in loaded_modules(read_text(files, PROC_MODULES))
        cmdline = read_text(files, PROC_CMDLINE)
        release = read_text(files, KERNEL_RELEASE).strip()
    except OSError as exc:
        return [unknown(name, f"cannot read /proc ({exc.strerror or type(exc).__name__})", source="modprobe")]
    try:
        builtin = MODULE in builtin_modules(read_text(files, f"/lib/modules/{release}/modules.builtin"))
    except OSError:
        return [unknown(name, f"cannot read modules.builtin for kernel {release}", source="modprobe")]

    how = cmdline_blocks(cmdline) or read_modprobe_config(files).blocks()
    if how and not loaded and not builtin:
        detail = {
            "install": "modprobe install rule refuses usb_storage",
            "blacklist": "usb_storage is blacklisted (not loaded automatically)",
        }.get(how, f"kernel parameter {how} blocks usb_storage")
        return [judged(name, True, True, source="modprobe", detail=detail)]
    if loaded:
        why = "the usb_storage module is loaded"
    elif builtin:
        why = "usb_storage is built into the kernel"
    else:
        why = "no modprobe rule blocks usb_storage"

    guard = await usbguard_verdict(runner)
    if guard.blocks:
        return [judged(name, True, True, source="usbguard", detail=f"{guard.reason}; {why}")]
    if guard.blocks is None:
        return [unknown(name, f"{why}; USBGuard state unknown: {guard.reason}", source="usbguard")]
    return [judged(name, False, False, source="modprobe", detail=f"{why}; {guard.reason}")]
