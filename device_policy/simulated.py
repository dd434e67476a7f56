"""Simulated posture: named fact profiles for development, demos and tests.

Every simulated fact carries ``source="simulated"``. A server outside development mode
calls ``refuse_simulated`` (or checks ``is_simulated``) on each report, so a
laptop that was left on the simulator can never obtain a posture token in production.

Profiles (each differs from ``compliant`` only where its name says)::

    compliant         everything the default policy asks, enrolled SIM, modem and IMEI
    sim-pin-off       no SIM PIN lock (modem.enabled_locks = [])
    wrong-sim         another SIM card: ICCID and IMSI differ from enrolment
                      (the modem, hence the IMEI, is still the enrolled one)
    disk-unencrypted  neither the root file system nor swap is encrypted
    firewall-off      no firewall running, so no default inbound deny either
    stale-patches     7 security updates pending, OS older than the minimum version
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from device_policy.errors import SimulatedSourceRefused
from device_policy.facts import Fact, FactSet, FactStatus, JsonValue
from device_policy.policy.identity import EnrolledIdentity, Platform

SIMULATED_SOURCE = "simulated"

# Used when the enrolment has no SIM/modem on record (room endpoints, fresh demos).
_PLACEHOLDER_ICCID = "8944000000000000001"
_PLACEHOLDER_IMSI = "234150000000001"
_PLACEHOLDER_IMEI = "356938035643809"
_FOREIGN_ICCID = "8944999999999999999"
_FOREIGN_IMSI = "234159999999999"


class SimulatedProfile(StrEnum):
    """The named simulated postures (see the module docstring)."""

    COMPLIANT = "compliant"
    SIM_PIN_OFF = "sim-pin-off"
    WRONG_SIM = "wrong-sim"
    DISK_UNENCRYPTED = "disk-unencrypted"
    FIREWALL_OFF = "firewall-off"
    STALE_PATCHES = "stale-patches"


PROFILES: tuple[str, ...] = tuple(profile.value for profile in SimulatedProfile)

_OVERRIDES: dict[SimulatedProfile, dict[str, JsonValue]] = {
    SimulatedProfile.COMPLIANT: {},
    SimulatedProfile.SIM_PIN_OFF: {"modem.enabled_locks": []},
    SimulatedProfile.WRONG_SIM: {"sim.iccid": _FOREIGN_ICCID, "sim.imsi": _FOREIGN_IMSI},
    SimulatedProfile.DISK_UNENCRYPTED: {"disk.root_encrypted": False, "disk.swap_encrypted": False},
    SimulatedProfile.FIREWALL_OFF: {
        "firewall.active": False,
        "firewall.default_inbound_deny": False,
    },
    SimulatedProfile.STALE_PATCHES: {"os.pending_security_updates": 7, "os.version": "11"},
}


def simulated_facts(
    profile: SimulatedProfile | str,
    *,
    enrolled: EnrolledIdentity,
    platform: Platform | str = Platform.LINUX,
) -> FactSet:
    """The facts a device in ``profile`` would report, for this enrolment."""
    try:
        chosen = SimulatedProfile(profile)
    except ValueError:
        raise ValueError(
            f'Unknown simulated profile "{profile}"; expected one of {", ".join(PROFILES)}'
        ) from None
    values = _compliant_values(enrolled, Platform(platform))
    values.update(_OVERRIDES[chosen])
    return {name: _fact(name, value) for name, value in values.items()}


def is_simulated(facts: Mapping[str, Fact]) -> bool:
    """Whether any fact came from the simulator."""
    return any(fact.source == SIMULATED_SOURCE for fact in facts.values())


def refuse_simulated(facts: Mapping[str, Fact], *, allow_simulated: bool) -> None:
    """Raise SimulatedSourceRefused for simulated facts unless the server is in development."""
    if allow_simulated or not is_simulated(facts):
        return
    names = sorted(name for name, fact in facts.items() if fact.source == SIMULATED_SOURCE)
    raise SimulatedSourceRefused(
        f"The report holds {len(names)} simulated fact(s) and the server is not in development mode",
        facts=names[:20],
    )


def _compliant_values(enrolled: EnrolledIdentity, platform: Platform) -> dict[str, JsonValue]:
    return {
        "disk.root_encrypted": True,
        "disk.swap_encrypted": True,
        "boot.secure_boot": True,
        "firewall.active": True,
        "firewall.default_inbound_deny": True,
        "screen_lock.enabled": True,
        "screen_lock.idle_delay_s": 300,
        "usb.mass_storage_blocked": True,
        "os.id": "debian" if platform is Platform.LINUX else "windows",
        "os.version": "12" if platform is Platform.LINUX else "10.0.22631",
        "os.pending_security_updates": 0,
        "modem.present": True,
        "modem.unlock_required": "none",
        "modem.enabled_locks": ["sim"],
        "modem.imei": enrolled.imei or _PLACEHOLDER_IMEI,
        "sim.iccid": enrolled.iccid or _PLACEHOLDER_ICCID,
        "sim.imsi": enrolled.imsi or _PLACEHOLDER_IMSI,
    }


def _fact(name: str, value: JsonValue) -> Fact:
    return Fact(
        name=name,
        status=FactStatus.PASS if _looks_good(name, value) else FactStatus.FAIL,
        value=value,
        detail="simulated",
        source=SIMULATED_SOURCE,
    )


def _looks_good(name: str, value: JsonValue) -> bool:
    # The collector's own verdict, as a real one would give it (it cannot know the
    # enrolled SIM); the policy decides anyway.
    if value is False:
        return False
    if name == "os.pending_security_updates":
        return value == 0
    if name == "modem.enabled_locks":
        return isinstance(value, list) and "sim" in value
    return True
