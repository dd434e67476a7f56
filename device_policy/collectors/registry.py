"""The parse entry point: saved command output in, the parser's findings out as JSON values.

``telemed-device parse KIND FILE`` calls :func:`parse`; :func:`list_kinds` names the kinds.
Each kind is one tool's output (or one file's format) with its own parser, the same
parser the collectors use. Give it the file's bytes when you can: UTF-16 (PowerShell's
``>``), a BOM and CRLF line ends are all handled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from typing import Any

from device_policy.collectors.errors import CollectorError, UnknownCollector
from device_policy.collectors.linux.disk import lsblk_report, parse_proc_swaps
from device_policy.collectors.linux.firewall import parse_nft, parse_ufw
from device_policy.collectors.linux.modem import parse_modem, parse_modem_list, parse_sim
from device_policy.collectors.linux.osrelease import parse_os_release
from device_policy.collectors.linux.screenlock import parse_gsettings_value
from device_policy.collectors.linux.secureboot import parse_mokutil
from device_policy.collectors.linux.updates import parse_apt_upgrade
from device_policy.collectors.linux.usb import parse_modprobe_conf
from device_policy.collectors.text import clean_text
from device_policy.collectors.windows.bitlocker import parse_manage_bde
from device_policy.collectors.windows.firewall import parse_advfirewall
from device_policy.collectors.windows.modem import (
    parse_interfaces,
    parse_pin,
    parse_pinlist,
    parse_readyinfo,
)
from device_policy.collectors.windows.regquery import parse_reg_query
from device_policy.collectors.windows.secureboot import parse_confirm_secureboot
from device_policy.facts import JsonValue


def _swaps(text: str) -> object:
    return {"swaps": parse_proc_swaps(text)}


def _with_properties(parse: Callable[[str], Any], *names: str) -> Callable[[str], object]:
    """Add computed verdicts (properties) to a parser's dataclass fields."""

    def run(text: str) -> object:
        found = parse(text)
        out = _json_object(found)
        out.update({name: _json(getattr(found, name)) for name in names})
        return out

    return run


PARSERS: dict[str, tuple[Callable[[str], object], str]] = {
    "lsblk": (lsblk_report, "lsblk --json -o NAME,KNAME,TYPE,FSTYPE,MOUNTPOINTS"),
    "proc-swaps": (_swaps, "/proc/swaps"),
    "mokutil": (_with_properties(parse_mokutil, "enforced"), "mokutil --sb-state"),
    "ufw": (_with_properties(parse_ufw, "default_inbound_deny"), "ufw status verbose"),
    "nft": (_with_properties(parse_nft, "active", "default_inbound_deny"), "nft -j list ruleset"),
    "gsettings-value": (parse_gsettings_value, "gsettings get SCHEMA KEY"),
    "modprobe-conf": (parse_modprobe_conf, "/etc/modprobe.d/*.conf"),
    "os-release": (parse_os_release, "/etc/os-release"),
    "apt-upgrade": (parse_apt_upgrade, "apt-get -s dist-upgrade, or apt list --upgradable"),
    "mmcli-modem-list": (parse_modem_list, "mmcli -L -K"),
    "mmcli-modem": (parse_modem, "mmcli -m N -K"),
    "mmcli-sim": (parse_sim, "mmcli -i N -K"),
    "manage-bde": (parse_manage_bde, "manage-bde -status"),
    "confirm-securebootuefi": (parse_confirm_secureboot, "Confirm-SecureBootUEFI"),
    "netsh-firewall": (
        _with_properties(parse_advfirewall, "active", "default_inbound_deny"),
        "netsh advfirewall show allprofiles",
    ),
    "reg-query": (parse_reg_query, "reg query KEY [/v NAME]"),
    "netsh-mbn-interfaces": (parse_interfaces, "netsh mbn show interfaces"),
    "netsh-mbn-readyinfo": (parse_readyinfo, "netsh mbn show readyinfo interface=*"),
    "netsh-mbn-pin": (parse_pin, "netsh mbn show pin interface=*"),
    "netsh-mbn-pinlist": (
        _with_properties(parse_pinlist, "sim_pin_enabled"),
        "netsh mbn show pinlist interface=*",
    ),
}


def list_kinds() -> list[str]:
    """Every kind :func:`parse` accepts, sorted."""
    return sorted(PARSERS)


def describe_kinds() -> dict[str, str]:
    """Each kind and the command (or file) whose output it parses."""
    return {kind: PARSERS[kind][1] for kind in list_kinds()}


def parse(kind: str, text: str | bytes) -> dict[str, JsonValue]:
    """Parse saved output of the tool named by ``kind`` into JSON-ready values."""
    entry = PARSERS.get(kind)
    if entry is None:
        raise UnknownCollector(kind, list_kinds())
    return _json_object(entry[0](clean_text(text)))


def _json_object(value: object) -> dict[str, JsonValue]:
    """A parser's result as a JSON object; anything else is a bug in the parser table."""
    out = _json(value)
    if not isinstance(out, dict):
        raise CollectorError(f"The parser returned {type(value).__name__}, not a record")
    return out


def _json(value: object) -> JsonValue:
    """Dataclasses to dicts, tuples to lists, enums to their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, Enum):
        return _json(value.value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
