"""The cellular modem and its SIM on Linux, through ModemManager's ``mmcli -K``.

``mmcli -L -K`` lists modems; ``mmcli -m N -K`` gives the modem's lock state
(``modem.generic.unlock-required``), enabled 3GPP facility locks
(``modem.3gpp.enabled-locks``; ``sim`` is the SIM PIN), IMEI and SIM slots;
``mmcli -i N -K`` gives the active SIM's ICCID and IMSI. The key-value format prints
lists as ``key.length`` plus ``key.value[i]``, and prints ``--`` for an empty value —
including ModemManager's ``none`` *and* ``unknown`` lock, which the modem state tells
apart. With two SIM slots, ``modem.generic.sim`` names the active SIM and an empty slot
shows as ``/``. Identifiers appear only as fact values, never in details or logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.invoke import Problem, run_and_parse
from device_policy.collectors.judge import judged, unknown_all
from device_policy.collectors.modemfacts import MODEM_FACTS, SIM_FACTS, modem_facts, sim_facts
from device_policy.collectors.names import MODEM_PRESENT
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text, g_strunescape
from device_policy.facts import Fact

LIST_ARGV = ("mmcli", "-L", "-K")
SOURCE = "mmcli"
EMPTY = "--"
NO_PATH = "/"
# States in which ModemManager has not (yet) read the lock and facility information.
_UNSETTLED_STATES = {"failed", "unknown", "initializing", "locked"}
_LIST_ITEM = re.compile(r"^(?P<key>.+)\.value\[(?P<index>\d+)\]$")

KeyValues = dict[str, str | list[str] | None]


def modem_argv(index: str) -> tuple[str, ...]:
    """``mmcli -m N -K``."""
    return ("mmcli", "-m", index, "-K")


def sim_argv(index: str) -> tuple[str, ...]:
    """``mmcli -i N -K``."""
    return ("mmcli", "-i", index, "-K")


def parse_keyvalues(text: str | bytes, tool: str = "mmcli") -> KeyValues:
    """Parse mmcli's ``-K`` output into scalars (``None`` for ``--``) and lists."""
    values: KeyValues = {}
    lists: dict[str, dict[int, str]] = {}
    for line in clean_text(text).splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or " " in key.strip():
            raise UnparsableOutput(tool, "a line is not 'key : value'")
        key, value = key.strip(), g_strunescape(value.strip())
        if key.endswith(".length"):
            lists.setdefault(key[: -len(".length")], {})
        elif (item := _LIST_ITEM.match(key)) is not None:
            lists.setdefault(item.group("key"), {})[int(item.group("index"))] = value
        else:
            values[key] = None if value == EMPTY else value
    for key, items in lists.items():
        values[key] = [items[i] for i in sorted(items)]
    if not values:
        raise UnparsableOutput(tool, "no key-value lines")
    return values


def _scalar(values: KeyValues, key: str) -> str | None:
    value = values.get(key)
    return value if isinstance(value, str) else None


def _list(values: KeyValues, key: str) -> list[str]:
    value = values.get(key)
    return value if isinstance(value, list) else []


def object_index(path: str) -> str:
    """The number at the end of a ModemManager object path (``…/Modem/3`` → ``3``)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModemList:
    """What ``parse("mmcli-modem-list", …)`` returns."""

    modems: tuple[str, ...]


@dataclass(frozen=True)
class ModemInfo:
    """What ``parse("mmcli-modem", …)`` returns."""

    unlock_required: str | None
    enabled_locks: tuple[str, ...]
    imei: str | None
    state: str | None
    sim: str | None
    sim_slots: tuple[str | None, ...]
    primary_sim_slot: int | None
    manufacturer: str | None
    model: str | None


@dataclass(frozen=True)
class SimInfo:
    """What ``parse("mmcli-sim", …)`` returns."""

    iccid: str | None
    imsi: str | None
    active: bool | None


def parse_modem_list(text: str | bytes) -> ModemList:
    """Parse ``mmcli -L -K`` (also the human "No modems were found")."""
    cleaned = clean_text(text)
    if cleaned.strip() == "No modems were found":
        return ModemList(())
    values = parse_keyvalues(cleaned)
    if "modem-list" not in values:
        raise UnparsableOutput("mmcli", "no modem-list key")
    return ModemList(tuple(_list(values, "modem-list")))


def parse_modem(text: str | bytes) -> ModemInfo:
    """Parse ``mmcli -m N -K``."""
    values = parse_keyvalues(text)
    if not any(key.startswith("modem.") for key in values):
        raise UnparsableOutput("mmcli", "no modem.* keys")
    state = _scalar(values, "modem.generic.state")
    lock = _scalar(values, "modem.generic.unlock-required")
    if lock is None and state not in _UNSETTLED_STATES | {None}:
        lock = "none"  # mmcli prints ModemManager's "none" as "--"
    slot = _scalar(values, "modem.generic.primary-sim-slot")
    return ModemInfo(
        unlock_required=lock,
        enabled_locks=tuple(_list(values, "modem.3gpp.enabled-locks")),
        imei=_scalar(values, "modem.3gpp.imei") or _scalar(values, "modem.generic.equipment-identifier"),
        state=state,
        sim=_path_or_none(_scalar(values, "modem.generic.sim")),
        sim_slots=tuple(_path_or_none(p) for p in _list(values, "modem.generic.sim-slots")),
        primary_sim_slot=int(slot) if slot and slot.isdigit() else None,
        manufacturer=_scalar(values, "modem.generic.manufacturer"),
        model=_scalar(values, "modem.generic.model"),
    )


def _path_or_none(path: str | None) -> str | None:
    return None if path in (None, NO_PATH) else path


def parse_sim(text: str | bytes) -> SimInfo:
    """Parse ``mmcli -i N -K``."""
    values = parse_keyvalues(text)
    if not any(key.startswith("sim.") for key in values):
        raise UnparsableOutput("mmcli", "no sim.* keys")
    active = _scalar(values, "sim.properties.active")
    return SimInfo(
        iccid=_scalar(values, "sim.properties.iccid"),
        imsi=_scalar(values, "sim.properties.imsi"),
        active=None if active is None else active == "yes",
    )


async def collect_modem(runner: CommandRunner) -> list[Fact]:
    """Facts ``modem.*`` and ``sim.*``."""
    every = (MODEM_PRESENT, *MODEM_FACTS, *SIM_FACTS)
    listing = await run_and_parse(runner, LIST_ARGV, parse_modem_list, tool="mmcli", timeout=15)
    if isinstance(listing, Problem):
        return unknown_all(every, listing, source=SOURCE)
    if not listing.modems:
        return [
            judged(MODEM_PRESENT, False, False, source=SOURCE, detail="ModemManager sees no modem"),
            *unknown_all((*MODEM_FACTS, *SIM_FACTS), "no modem present", source=SOURCE),
        ]
    count = len(listing.modems)
    which = f"{count} modems; reporting the first" if count > 1 else "one modem"
    present = judged(MODEM_PRESENT, True, True, source=SOURCE, detail=which)

    argv = modem_argv(object_index(listing.modems[0]))
    modem = await run_and_parse(runner, argv, parse_modem, tool="mmcli", timeout=15)
    if isinstance(modem, Problem):
        return [present, *unknown_all((*MODEM_FACTS, *SIM_FACTS), modem, source=SOURCE)]
    settled = modem.state not in _UNSETTLED_STATES | {None}
    state = f"modem state {modem.state or 'unknown'}"
    facts = modem_facts(
        unlock_required=modem.unlock_required,
        # Facility locks are read once the SIM is unlocked; before that "--" means "not read".
        enabled_locks=list(modem.enabled_locks) if modem.enabled_locks or settled else None,
        imei=modem.imei,
        source=SOURCE,
        unlock_unknown=f"lock state not known ({state})",
        locks_unknown=f"facility locks not readable ({state})",
    )
    return [present, *facts, *await _sim_facts(runner, modem)]


async def _sim_facts(runner: CommandRunner, modem: ModemInfo) -> list[Fact]:
    if modem.sim is None:
        reason = "no SIM in the active slot"
        if modem.sim_slots:
            filled = sum(1 for slot in modem.sim_slots if slot)
            reason += f" ({filled} of {len(modem.sim_slots)} slots hold a SIM)"
        return unknown_all(SIM_FACTS, reason, source=SOURCE)
    argv = sim_argv(object_index(modem.sim))
    sim = await run_and_parse(runner, argv, parse_sim, tool="mmcli", timeout=15)
    if isinstance(sim, Problem):
        return unknown_all(SIM_FACTS, sim, source=SOURCE)
    locked = modem.unlock_required != "none"
    return sim_facts(sim.iccid, sim.imsi, source=SOURCE, locked=locked)
