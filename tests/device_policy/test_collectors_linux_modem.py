"""modem.* and sim.* from ModemManager's mmcli -K output."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.collectors import CommandResult, FakeRunner, UnparsableOutput
from device_policy.collectors.linux.modem import (
    LIST_ARGV,
    collect_modem,
    modem_argv,
    parse_keyvalues,
    parse_modem,
    parse_modem_list,
    parse_sim,
    sim_argv,
)
from device_policy.facts import Fact, FactStatus

FIXTURES = Path(__file__).parent / "fixtures" / "linux"
IMEI = "490154203237518"
ICCID = "8944100000000000017"
IMSI = "234150999999999"


def saved(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


async def modem(runner: FakeRunner) -> dict[str, Fact]:
    return {fact.name: fact for fact in await collect_modem(runner)}


def laptop(modem_fixture: str, sim_fixture: str = "mmcli_sim.txt", sim: str = "0") -> FakeRunner:
    return FakeRunner(
        {
            LIST_ARGV: saved("mmcli_list_one.txt"),
            modem_argv("0"): saved(modem_fixture),
            sim_argv(sim): saved(sim_fixture),
        }
    )


def test_key_value_lists_and_empty_values() -> None:
    values = parse_keyvalues(saved("mmcli_modem_pin_enabled_unlocked.txt"))
    assert values["modem.generic.unlock-retries"] == [
        "sim-pin (3)",
        "sim-puk (10)",
        "sim-pin2 (3)",
        "sim-puk2 (10)",
    ]
    assert values["modem.3gpp.enabled-locks"] == ["sim"]
    assert values["modem.cdma.meid"] is None
    assert values["modem.generic.current-modes"] == "allowed: 3g, 4g; preferred: 4g"


def test_modem_list() -> None:
    assert parse_modem_list(saved("mmcli_list_one.txt")).modems == ("/org/freedesktop/ModemManager1/Modem/0",)
    assert len(parse_modem_list(saved("mmcli_list_two.txt")).modems) == 2


@pytest.mark.parametrize(
    "text",
    [
        "modem-list : 0\n",  # what mmcli 1.20 really prints for no modems
        "modem-list.length : 0\n",
        "No modems were found\n",
    ],
)
def test_no_modems(text: str) -> None:
    assert parse_modem_list(text).modems == ()


def test_modem_with_sim_pin_enabled_and_entered() -> None:
    info = parse_modem(saved("mmcli_modem_pin_enabled_unlocked.txt"))
    # mmcli prints ModemManager's "none" lock as "--"; a registered modem makes it "none".
    assert (info.unlock_required, info.enabled_locks, info.imei, info.state) == (
        "none",
        ("sim",),
        IMEI,
        "registered",
    )
    assert info.sim == "/org/freedesktop/ModemManager1/SIM/0"


def test_modem_waiting_for_the_pin() -> None:
    info = parse_modem(saved("mmcli_modem_waiting_for_pin.txt"))
    assert (info.unlock_required, info.state) == ("sim-pin", "locked")


def test_two_slots_with_one_empty() -> None:
    info = parse_modem(saved("mmcli_modem_dual_slot.txt"))
    assert info.sim_slots == ("/org/freedesktop/ModemManager1/SIM/1", None)
    assert (info.primary_sim_slot, info.sim) == (1, "/org/freedesktop/ModemManager1/SIM/1")


def test_failed_modem_lock_is_not_known() -> None:
    info = parse_modem(saved("mmcli_modem_no_sim.txt"))
    assert (info.unlock_required, info.sim, info.sim_slots) == (None, None, (None, None))


def test_sim_properties() -> None:
    sim = parse_sim(saved("mmcli_sim.txt"))
    assert (sim.iccid, sim.imsi, sim.active) == (ICCID, IMSI, True)
    old = parse_sim(saved("mmcli_sim_mm118.txt"))
    assert old.active is None and old.iccid == "8944100000000000025"


def test_modem_output_given_as_sim_output_is_refused() -> None:
    with pytest.raises(UnparsableOutput):
        parse_sim(saved("mmcli_modem_dual_slot.txt"))
    with pytest.raises(UnparsableOutput):
        parse_modem("error: couldn't find modem\n")


async def test_locked_sim_in_use_passes_everything() -> None:
    facts = await modem(laptop("mmcli_modem_pin_enabled_unlocked.txt"))
    expected = {
        "modem.present": True,
        "modem.unlock_required": "none",
        "modem.enabled_locks": ["sim"],
        "modem.imei": IMEI,
        "sim.iccid": ICCID,
        "sim.imsi": IMSI,
    }
    assert {name: fact.value for name, fact in facts.items()} == expected
    assert all(fact.status is FactStatus.PASS for fact in facts.values())
    assert all(fact.source == "mmcli" for fact in facts.values())


async def test_identifiers_never_appear_in_details() -> None:
    facts = await modem(laptop("mmcli_modem_pin_enabled_unlocked.txt"))
    details = " ".join(fact.detail or "" for fact in facts.values())
    for identifier in (IMEI, ICCID, IMSI):
        assert identifier not in details


async def test_modem_waiting_for_pin() -> None:
    facts = await modem(laptop("mmcli_modem_waiting_for_pin.txt", "mmcli_sim_locked.txt"))
    unlock = facts["modem.unlock_required"]
    assert (unlock.status, unlock.value, unlock.detail) == (
        FactStatus.FAIL,
        "sim-pin",
        "modem waits for sim-pin",
    )
    locks = facts["modem.enabled_locks"]
    assert (locks.status, locks.detail) == (
        FactStatus.UNKNOWN,
        "facility locks not readable (modem state locked)",
    )
    assert facts["sim.iccid"].value == ICCID
    assert facts["sim.imsi"].status is FactStatus.UNKNOWN
    assert facts["sim.imsi"].detail == "SIM reports no IMSI (the SIM is still locked)"


async def test_sim_pin_switched_off_fails() -> None:
    facts = await modem(laptop("mmcli_modem_pin_disabled.txt"))
    locks = facts["modem.enabled_locks"]
    assert (locks.status, locks.value, locks.detail) == (
        FactStatus.FAIL,
        [],
        "SIM PIN lock not enabled",
    )


async def test_dual_slot_modem_reads_the_active_sim() -> None:
    runner = laptop("mmcli_modem_dual_slot.txt", "mmcli_sim_mm118.txt", sim="1")
    facts = await modem(runner)
    assert facts["sim.iccid"].value == "8944100000000000025"
    assert sim_argv("1") in runner.calls


async def test_no_sim_in_either_slot() -> None:
    facts = await modem(laptop("mmcli_modem_no_sim.txt"))
    assert facts["modem.present"].status is FactStatus.PASS
    assert facts["modem.unlock_required"].status is FactStatus.UNKNOWN
    assert facts["modem.unlock_required"].detail == "lock state not known (modem state failed)"
    for name in ("sim.iccid", "sim.imsi"):
        assert facts[name].status is FactStatus.UNKNOWN
        assert facts[name].detail == "no SIM in the active slot (0 of 2 slots hold a SIM)"


async def test_no_modem() -> None:
    facts = await modem(FakeRunner({LIST_ARGV: saved("mmcli_list_none.txt")}))
    present = facts["modem.present"]
    assert (present.status, present.value) == (FactStatus.FAIL, False)
    assert {facts[n].detail for n in facts if n != "modem.present"} == {"no modem present"}


async def test_two_modems_report_the_first() -> None:
    runner = FakeRunner(
        {
            LIST_ARGV: saved("mmcli_list_two.txt"),
            modem_argv("3"): saved("mmcli_modem_pin_enabled_unlocked.txt"),
            sim_argv("0"): saved("mmcli_sim.txt"),
        }
    )
    facts = await modem(runner)
    assert facts["modem.present"].detail == "2 modems; reporting the first"
    assert facts["modem.imei"].value == IMEI


async def test_modemmanager_not_running_is_unknown() -> None:
    stopped = CommandResult(1, "", "error: couldn't find the ModemManager process in the bus\n")
    facts = await modem(FakeRunner({LIST_ARGV: stopped}))
    assert len(facts) == 6
    for fact in facts.values():
        assert fact.status is FactStatus.UNKNOWN
        assert fact.detail == (
            "mmcli exited with status 1: error: couldn't find the ModemManager process in the bus"
        )


async def test_mmcli_missing_is_unknown() -> None:
    facts = await modem(FakeRunner())
    assert {fact.detail for fact in facts.values()} == {"mmcli is not installed"}
