"""The simulated fact source: named profiles, always marked, refused outside development."""

from __future__ import annotations

import pytest

from device_policy.errors import SimulatedSourceRefused
from device_policy.facts import Fact, FactStatus
from device_policy.policy import DeviceKind, EnrolledIdentity
from device_policy.simulated import (
    PROFILES,
    SIMULATED_SOURCE,
    is_simulated,
    refuse_simulated,
    simulated_facts,
)

LAPTOP = EnrolledIdentity(
    device_id="lap-0007",
    device_kind=DeviceKind.PRISON_LAPTOP,
    iccid="8944110000000000017",
    imsi="234150000000017",
    imei="356938035643817",
)

COLLECTOR_FACTS = {
    "disk.root_encrypted": bool,
    "disk.swap_encrypted": bool,
    "boot.secure_boot": bool,
    "firewall.active": bool,
    "firewall.default_inbound_deny": bool,
    "screen_lock.enabled": bool,
    "screen_lock.idle_delay_s": int,
    "usb.mass_storage_blocked": bool,
    "os.id": str,
    "os.version": str,
    "os.pending_security_updates": int,
    "modem.present": bool,
    "modem.unlock_required": str,
    "modem.enabled_locks": list,
    "modem.imei": str,
    "sim.iccid": str,
    "sim.imsi": str,
}


def test_profiles_are_the_named_six() -> None:
    assert PROFILES == (
        "compliant",
        "sim-pin-off",
        "wrong-sim",
        "disk-unencrypted",
        "firewall-off",
        "stale-patches",
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_report_every_collector_fact_with_its_type(profile: str) -> None:
    facts = simulated_facts(profile, enrolled=LAPTOP)

    assert set(facts) == set(COLLECTOR_FACTS)
    for name, fact in facts.items():
        assert fact.name == name
        assert type(fact.value) is COLLECTOR_FACTS[name], name


@pytest.mark.parametrize("profile", PROFILES)
def test_every_simulated_fact_says_so(profile: str) -> None:
    facts = simulated_facts(profile, enrolled=LAPTOP)

    assert {fact.source for fact in facts.values()} == {SIMULATED_SOURCE}
    assert is_simulated(facts) is True


def test_compliant_uses_the_enrolled_identity() -> None:
    facts = simulated_facts("compliant", enrolled=LAPTOP)

    assert facts["sim.iccid"].value == LAPTOP.iccid
    assert facts["sim.imsi"].value == LAPTOP.imsi
    assert facts["modem.imei"].value == LAPTOP.imei
    assert facts["modem.enabled_locks"].value == ["sim"]
    assert facts["modem.unlock_required"].value == "none"


def test_wrong_sim_reports_another_sim_in_the_enrolled_modem() -> None:
    facts = simulated_facts("wrong-sim", enrolled=LAPTOP)

    assert facts["sim.iccid"].value != LAPTOP.iccid
    assert facts["sim.imsi"].value != LAPTOP.imsi
    assert facts["modem.imei"].value == LAPTOP.imei


def test_profiles_follow_another_enrolment() -> None:
    other = LAPTOP.model_copy(update={"iccid": "8944110000000000999", "imei": "490154203237518"})

    facts = simulated_facts("compliant", enrolled=other)

    assert facts["sim.iccid"].value == "8944110000000000999"
    assert facts["modem.imei"].value == "490154203237518"


def test_collector_status_matches_the_value() -> None:
    facts = simulated_facts("disk-unencrypted", enrolled=LAPTOP)

    assert facts["disk.root_encrypted"].status is FactStatus.FAIL
    assert facts["boot.secure_boot"].status is FactStatus.PASS


def test_an_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match='Unknown simulated profile "hacked"; expected one of'):
        simulated_facts("hacked", enrolled=LAPTOP)


def test_real_facts_are_not_simulated() -> None:
    facts = {
        "disk.root_encrypted": Fact(
            name="disk.root_encrypted", status=FactStatus.PASS, value=True, source="lsblk"
        ),
        "boot.secure_boot": Fact.unknown("boot.secure_boot", "mokutil missing"),
    }

    assert is_simulated(facts) is False
    refuse_simulated(facts, allow_simulated=False)  # no error


def test_one_simulated_fact_among_real_ones_is_enough_to_refuse() -> None:
    facts = {
        "disk.root_encrypted": Fact(
            name="disk.root_encrypted", status=FactStatus.PASS, value=True, source="lsblk"
        ),
        "sim.iccid": simulated_facts("compliant", enrolled=LAPTOP)["sim.iccid"],
    }

    with pytest.raises(SimulatedSourceRefused) as caught:
        refuse_simulated(facts, allow_simulated=False)

    assert caught.value.code == "simulated_source_refused"
    assert caught.value.status == 403
    assert caught.value.extra == {"facts": ["sim.iccid"]}
    assert str(caught.value) == (
        "The report holds 1 simulated fact(s) and the server is not in development mode"
    )


def test_development_mode_accepts_simulated_facts() -> None:
    refuse_simulated(simulated_facts("compliant", enrolled=LAPTOP), allow_simulated=True)
