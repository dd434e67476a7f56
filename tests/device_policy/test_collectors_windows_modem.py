"""modem.* and sim.* on Windows from netsh mbn (CRLF, UTF-16 as PowerShell saves it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeRunner, UnparsableOutput
from device_policy.collectors.windows.modem import (
    INTERFACES_ARGV,
    PIN_ARGV,
    PINLIST_ARGV,
    READYINFO_ARGV,
    collect_modem,
    parse_interfaces,
    parse_pin,
    parse_pinlist,
    parse_readyinfo,
    unlock_from_pin_state,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "windows"
IMEI = "490154203237518"
ICCID = "8944100000000000017"
IMSI = "234150999999999"


def saved(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def laptop(**overrides: bytes | CommandResult) -> FakeRunner:
    outputs: dict[tuple[str, ...], bytes | CommandResult] = {
        INTERFACES_ARGV: saved("netsh_mbn_interfaces.txt"),
        READYINFO_ARGV: saved("netsh_mbn_readyinfo.txt"),
        PIN_ARGV: saved("netsh_mbn_pin_unlocked.txt"),
        PINLIST_ARGV: saved("netsh_mbn_pinlist.txt"),
    }
    names = {"interfaces": INTERFACES_ARGV, "ready": READYINFO_ARGV, "pin": PIN_ARGV, "pinlist": PINLIST_ARGV}
    outputs.update({names[key]: value for key, value in overrides.items()})
    return FakeRunner(outputs)


async def modem(runner: FakeRunner) -> dict[str, Fact]:
    return {fact.name: fact for fact in await collect_modem(runner)}


@pytest.mark.parametrize("name", ["netsh_mbn_interfaces.txt", "netsh_mbn_interfaces_utf16.txt"])
def test_interfaces(name: str) -> None:
    listing = parse_interfaces(saved(name))
    (interface,) = listing.interfaces
    assert (interface.name, interface.device_id, interface.cellular_class, interface.state) == (
        "Mobile Broadband Connection",
        IMEI,
        "GSM",
        "Connected",
    )


def test_no_interface_and_stopped_service() -> None:
    assert parse_interfaces(saved("netsh_mbn_interfaces_none.txt")).interfaces == ()
    stopped = parse_interfaces(saved("netsh_mbn_wwansvc_stopped.txt"))
    assert (stopped.service_running, stopped.interfaces) == (False, ())


@pytest.mark.parametrize("name", ["netsh_mbn_readyinfo.txt", "netsh_mbn_readyinfo_utf16.txt"])
def test_readyinfo(name: str) -> None:
    ready = parse_readyinfo(saved(name))
    assert (ready.ready_state, ready.imsi, ready.iccid) == (
        "Ready to power up and register",
        IMSI,
        ICCID,
    )


def test_readyinfo_without_sim_has_empty_identifiers() -> None:
    ready = parse_readyinfo(saved("netsh_mbn_readyinfo_no_sim.txt"))
    assert (ready.ready_state, ready.imsi, ready.iccid) == ("SIM not inserted", None, None)


def test_pin_states() -> None:
    assert parse_pin(saved("netsh_mbn_pin_unlocked.txt")).unlock_required == "none"
    required = parse_pin(saved("netsh_mbn_pin_required.txt"))
    assert (required.unlock_required, required.attempts_remaining) == ("sim-pin", 3)
    assert unlock_from_pin_state("Unblock") == "sim-puk"
    # Unrecognised wording is not guessed at.
    assert unlock_from_pin_state("PIN-Status unbekannt") is None


def test_pinlist() -> None:
    assert parse_pinlist(saved("netsh_mbn_pinlist.txt")).sim_pin_enabled is True
    assert parse_pinlist(saved("netsh_mbn_pinlist_pin_disabled.txt")).sim_pin_enabled is False
    with pytest.raises(UnparsableOutput):
        parse_pinlist(saved("netsh_mbn_readyinfo.txt"))


async def test_locked_sim_in_use_passes_everything() -> None:
    facts = await modem(laptop())
    assert {name: fact.value for name, fact in facts.items()} == {
        "modem.present": True,
        "modem.unlock_required": "none",
        "modem.enabled_locks": ["sim"],
        "modem.imei": IMEI,
        "sim.iccid": ICCID,
        "sim.imsi": IMSI,
    }
    assert all(fact.status is FactStatus.PASS for fact in facts.values())
    assert all(fact.source == "netsh mbn" for fact in facts.values())


async def test_utf16_saved_outputs_give_the_same_facts() -> None:
    facts = await modem(
        laptop(
            interfaces=saved("netsh_mbn_interfaces_utf16.txt"),
            ready=saved("netsh_mbn_readyinfo_utf16.txt"),
        )
    )
    assert (facts["modem.imei"].value, facts["sim.iccid"].value) == (IMEI, ICCID)


async def test_pin_entry_pending() -> None:
    facts = await modem(
        laptop(pin=saved("netsh_mbn_pin_required.txt"), ready=saved("netsh_mbn_readyinfo_locked.txt"))
    )
    unlock = facts["modem.unlock_required"]
    assert (unlock.status, unlock.value) == (FactStatus.FAIL, "sim-pin")
    assert facts["sim.iccid"].value == ICCID
    assert facts["sim.imsi"].detail == "SIM reports no IMSI (the SIM is still locked)"


async def test_pin_lock_switched_off_fails() -> None:
    facts = await modem(laptop(pinlist=saved("netsh_mbn_pinlist_pin_disabled.txt")))
    locks = facts["modem.enabled_locks"]
    assert (locks.status, locks.value) == (FactStatus.FAIL, [])


async def test_device_locked_without_pin_output_still_reads_as_sim_pin() -> None:
    facts = await modem(
        laptop(
            pin=CommandResult(1, "", "The requested operation is not supported."),
            ready=saved("netsh_mbn_readyinfo_locked.txt"),
        )
    )
    assert facts["modem.unlock_required"].value == "sim-pin"


async def test_no_sim_inserted() -> None:
    facts = await modem(laptop(ready=saved("netsh_mbn_readyinfo_no_sim.txt")))
    assert {facts["sim.iccid"].detail, facts["sim.imsi"].detail} == {"no SIM inserted"}
    assert facts["sim.iccid"].status is FactStatus.UNKNOWN


async def test_no_modem() -> None:
    facts = await modem(laptop(interfaces=saved("netsh_mbn_interfaces_none.txt")))
    assert (facts["modem.present"].status, facts["modem.present"].value) == (FactStatus.FAIL, False)
    assert facts["modem.imei"].detail == "no modem present"


async def test_wwan_service_stopped_is_unknown() -> None:
    facts = await modem(laptop(interfaces=saved("netsh_mbn_wwansvc_stopped.txt")))
    assert {fact.status for fact in facts.values()} == {FactStatus.UNKNOWN}
    assert facts["modem.present"].detail == "the WWAN AutoConfig service (wwansvc) is not running"


async def test_unrecognised_pin_state_is_unknown() -> None:
    german = b"\r\nPIN-Informationen:\r\n    PIN-Typ   : PIN1\r\n    PIN-Status: Entsperrt\r\n"
    facts = await modem(laptop(pin=german))
    unlock = facts["modem.unlock_required"]
    assert unlock.status is FactStatus.UNKNOWN
    assert unlock.detail == 'Cannot parse netsh mbn pin output: no "pin state" line'


async def test_netsh_missing_is_unknown() -> None:
    facts = await modem(FakeRunner())
    assert {fact.detail for fact in facts.values()} == {"netsh mbn is not installed"}
