"""The cellular modem and its SIM on Windows, through ``netsh mbn``.

``show interfaces`` lists mobile-broadband interfaces (``Device Id`` is the IMEI on a
GSM/LTE modem); ``show readyinfo interface=*`` gives the SIM state, ``Subscriber Id``
(the IMSI) and ``SIM ICC Id``; ``show pin interface=*`` says whether the modem waits for
a PIN or PUK; ``show pinlist interface=*`` says whether the PIN1 (SIM PIN) lock is
enabled. Facts use ModemManager's vocabulary (``none``, ``sim-pin``, ``sim-puk``; lock
``sim``) so that one policy rule covers both platforms. Output saved by PowerShell is
UTF-16 with a BOM and CRLF line ends; both are handled. Messages in another language
than English are not recognised and give ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.invoke import Problem, run_and_parse
from device_policy.collectors.judge import judged, unknown_all
from device_policy.collectors.modemfacts import MODEM_FACTS, SIM_FACTS, modem_facts, sim_facts
from device_policy.collectors.names import MODEM_PRESENT, SIM_PIN_LOCK
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.windows.netsh import NetshRecord, normalise_key, parse_records
from device_policy.facts import Fact

INTERFACES_ARGV = ("netsh", "mbn", "show", "interfaces")
READYINFO_ARGV = ("netsh", "mbn", "show", "readyinfo", "interface=*")
PIN_ARGV = ("netsh", "mbn", "show", "pin", "interface=*")
PINLIST_ARGV = ("netsh", "mbn", "show", "pinlist", "interface=*")
SOURCE = "netsh mbn"

_NO_INTERFACE = "there is no mobile broadband interface"
_SERVICE_STOPPED = "(wwansvc) is not running"
_SIM_PIN_TYPES = {"pin1", "pin", "simpin", "sim pin"}


@dataclass(frozen=True)
class MbnInterface:
    """One mobile-broadband interface."""

    name: str | None
    state: str | None
    device_id: str | None
    cellular_class: str | None
    manufacturer: str | None
    model: str | None
    provider_name: str | None


@dataclass(frozen=True)
class MbnInterfaces:
    """What ``parse("netsh-mbn-interfaces", …)`` returns."""

    service_running: bool
    interfaces: tuple[MbnInterface, ...]


@dataclass(frozen=True)
class MbnReadyInfo:
    """What ``parse("netsh-mbn-readyinfo", …)`` returns (first interface)."""

    ready_state: str | None
    imsi: str | None
    iccid: str | None
    emergency_mode: str | None


@dataclass(frozen=True)
class MbnPin:
    """What ``parse("netsh-mbn-pin", …)`` returns (first interface)."""

    pin_state: str | None
    pin_type: str | None
    unlock_required: str | None
    attempts_remaining: int | None


@dataclass(frozen=True)
class MbnPinList:
    """What ``parse("netsh-mbn-pinlist", …)`` returns: each PIN type and its mode."""

    pins: dict[str, str]

    @property
    def sim_pin_enabled(self) -> bool | None:
        """Whether the PIN1 (SIM PIN) lock is enabled; ``None`` when not listed or unclear."""
        for pin_type, mode in self.pins.items():
            if normalise_key(pin_type) in _SIM_PIN_TYPES:
                mode = mode.lower()
                return True if mode == "enabled" else False if mode == "disabled" else None
        return None


def _service_check(headers: list[str], tool: str) -> None:
    lowered = " ".join(headers).lower()
    if _SERVICE_STOPPED in lowered:
        raise UnparsableOutput(tool, "the WWAN AutoConfig service (wwansvc) is not running")


def _empty(value: str | None) -> str | None:
    # netsh prints "?" or nothing for a value the modem did not report.
    return None if value in (None, "", "?", "Unknown") else value


def parse_interfaces(text: str | bytes) -> MbnInterfaces:
    """Parse ``netsh mbn show interfaces``."""
    headers, records = parse_records(text)
    lowered = " ".join(headers).lower()
    if _SERVICE_STOPPED in lowered:
        return MbnInterfaces(False, ())
    if _NO_INTERFACE in lowered:
        return MbnInterfaces(True, ())
    interfaces = tuple(
        MbnInterface(
            name=_empty(r.get("name")),
            state=_empty(r.get("state")),
            device_id=_empty(r.get("device id")),
            cellular_class=_empty(r.get("cellular class")),
            manufacturer=_empty(r.get("manufacturer")),
            model=_empty(r.get("model")),
            provider_name=_empty(r.get("provider name")),
        )
        for r in records
        if "name" in r
    )
    if not interfaces:
        raise UnparsableOutput("netsh mbn", "no interface and no known message")
    return MbnInterfaces(True, interfaces)


def _first(text: str | bytes, key: str, tool: str) -> NetshRecord:
    headers, records = parse_records(text)
    _service_check(headers, tool)
    for record in records:
        if key in record:
            return record
    raise UnparsableOutput(tool, f'no "{key}" line')


def parse_readyinfo(text: str | bytes) -> MbnReadyInfo:
    """Parse ``netsh mbn show readyinfo interface=*``."""
    record = _first(text, "state", "netsh mbn readyinfo")
    return MbnReadyInfo(
        ready_state=_empty(record.get("state")),
        imsi=_empty(record.get("subscriber id")),
        iccid=_empty(record.get("sim icc id")),
        emergency_mode=_empty(record.get("emergency mode")),
    )


# PIN states as netsh words them (MBN_PIN_STATE: none / enter / unblock). Only these exact
# phrases are read; anything else leaves the lock state unknown rather than guessed.
_PIN_STATES = {
    "unlocked": "none",
    "none": "none",
    "no pin required": "none",
    "pin not required": "none",
    "not required": "none",
    "locked": "sim-pin",
    "enter": "sim-pin",
    "enter pin": "sim-pin",
    "pin required": "sim-pin",
    "blocked": "sim-puk",
    "unblock": "sim-puk",
    "puk required": "sim-puk",
}


def unlock_from_pin_state(state: str | None) -> str | None:
    """Map netsh's PIN state to ModemManager's lock names; ``None`` when unrecognised."""
    return None if state is None else _PIN_STATES.get(normalise_key(state))


def parse_pin(text: str | bytes) -> MbnPin:
    """Parse ``netsh mbn show pin interface=*``."""
    record = _first(text, "pin state", "netsh mbn pin")
    state = _empty(record.get("pin state"))
    attempts = record.get("attempts remaining") or record.get("remaining attempts")
    return MbnPin(
        pin_state=state,
        pin_type=_empty(record.get("pin type")),
        unlock_required=unlock_from_pin_state(state),
        attempts_remaining=int(attempts) if attempts and attempts.isdigit() else None,
    )


def parse_pinlist(text: str | bytes) -> MbnPinList:
    """Parse ``netsh mbn show pinlist interface=*`` (first interface)."""
    headers, records = parse_records(text)
    _service_check(headers, "netsh mbn pinlist")
    pins: dict[str, str] = {}
    for record in records:
        pin_type = record.get("pin type")
        if pin_type is None:
            continue
        if pin_type in pins:
            break  # the next interface's list begins
        pins[pin_type] = record.get("pin mode", "")
    if not pins:
        raise UnparsableOutput("netsh mbn pinlist", 'no "Pin Type" line')
    return MbnPinList(pins)


async def collect_modem(runner: CommandRunner) -> list[Fact]:
    """Facts ``modem.*`` and ``sim.*``."""
    every = (MODEM_PRESENT, *MODEM_FACTS, *SIM_FACTS)
    listing = await run_and_parse(runner, INTERFACES_ARGV, parse_interfaces, tool=SOURCE)
    if isinstance(listing, Problem):
        return unknown_all(every, listing, source=SOURCE)
    if not listing.service_running:
        reason = "the WWAN AutoConfig service (wwansvc) is not running"
        return unknown_all(every, reason, source=SOURCE)
    if not listing.interfaces:
        return [
            judged(MODEM_PRESENT, False, False, source=SOURCE, detail="no mobile broadband interface"),
            *unknown_all((*MODEM_FACTS, *SIM_FACTS), "no modem present", source=SOURCE),
        ]
    count = len(listing.interfaces)
    which = f"{count} interfaces; reporting the first" if count > 1 else "one interface"
    interface = listing.interfaces[0]

    ready = await run_and_parse(runner, READYINFO_ARGV, parse_readyinfo, tool=SOURCE)
    pin = await run_and_parse(runner, PIN_ARGV, parse_pin, tool=SOURCE)
    pinlist = await run_and_parse(runner, PINLIST_ARGV, parse_pinlist, tool=SOURCE)

    ready_state = None if isinstance(ready, Problem) else (ready.ready_state or "").lower()
    unlock = None if isinstance(pin, Problem) else pin.unlock_required
    if unlock is None and ready_state == "device locked":
        unlock = "sim-pin"
    sim_pin = None if isinstance(pinlist, Problem) else pinlist.sim_pin_enabled
    facts = [
        judged(MODEM_PRESENT, True, True, source=SOURCE, detail=which),
        *modem_facts(
            unlock_required=unlock,
            enabled_locks=None if sim_pin is None else [SIM_PIN_LOCK] if sim_pin else [],
            imei=interface.device_id,
            source=SOURCE,
            unlock_unknown=pin if isinstance(pin, Problem) else "PIN state not recognised",
            locks_unknown=pinlist
            if isinstance(pinlist, Problem)
            else "PIN1 mode not listed or not recognised",
        ),
    ]
    if isinstance(ready, Problem):
        facts.extend(unknown_all(SIM_FACTS, ready, source=SOURCE))
    elif ready_state == "sim not inserted":
        facts.extend(unknown_all(SIM_FACTS, "no SIM inserted", source=SOURCE))
    else:
        facts.extend(sim_facts(ready.iccid, ready.imsi, source=SOURCE, locked=unlock != "none"))
    return facts
