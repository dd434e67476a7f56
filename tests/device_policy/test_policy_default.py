"""The shipped default policy against every simulated profile, laptop and room endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_policy.facts import Fact, FactStatus
from device_policy.policy import (
    DeviceKind,
    EnrolledIdentity,
    Operator,
    RuleOutcome,
    Severity,
    evaluate,
    load_default_policy,
)
from device_policy.policy.remediation import display
from device_policy.simulated import PROFILES, simulated_facts

LAPTOP = EnrolledIdentity(
    device_id="lap-0007",
    device_kind=DeviceKind.PRISON_LAPTOP,
    iccid="8944110000000000017",
    imsi="234150000000017",
    imei="356938035643817",
)
ROOM = EnrolledIdentity(device_id="room-hmp-01", device_kind=DeviceKind.ROOM_ENDPOINT)

MODEM_RULES = {
    "modem-present",
    "sim-pin-lock",
    "sim-unlocked",
    "sim-iccid-enrolled",
    "sim-imsi-enrolled",
    "modem-imei-enrolled",
}

# What the brief asks of the default policy, rule by rule.
SHIPPED = {
    "disk-root-encrypted": ("disk.root_encrypted", "is_true", None, "block"),
    "disk-swap-encrypted": ("disk.swap_encrypted", "is_true", None, "block"),
    "secure-boot-enabled": ("boot.secure_boot", "is_true", None, "block"),
    "firewall-active": ("firewall.active", "is_true", None, "block"),
    "firewall-inbound-deny": ("firewall.default_inbound_deny", "is_true", None, "block"),
    "screen-lock-enabled": ("screen_lock.enabled", "is_true", None, "block"),
    "screen-lock-idle-max": ("screen_lock.idle_delay_s", "lte", 300, "block"),
    "screen-lock-idle-set": ("screen_lock.idle_delay_s", "gte", 1, "block"),
    "usb-storage-blocked": ("usb.mass_storage_blocked", "is_true", None, "block"),
    "os-security-updates": ("os.pending_security_updates", "eq", 0, "block"),
    "os-version-minimum-linux": ("os.version", "version_gte", "12", "warn"),
    "os-version-minimum-windows": ("os.version", "version_gte", "10.0.19045", "warn"),
    "modem-present": ("modem.present", "is_true", None, "block"),
    "sim-pin-lock": ("modem.enabled_locks", "contains", "sim", "block"),
    "sim-unlocked": ("modem.unlock_required", "eq", "none", "block"),
    "sim-iccid-enrolled": ("sim.iccid", "matches_enrolled", "enrolled.iccid", "block"),
    "sim-imsi-enrolled": ("sim.imsi", "matches_enrolled", "enrolled.imsi", "block"),
    "modem-imei-enrolled": ("modem.imei", "matches_enrolled", "enrolled.imei", "block"),
}

FAILS = {
    "compliant": set(),
    "sim-pin-off": {"sim-pin-lock"},
    "wrong-sim": {"sim-iccid-enrolled", "sim-imsi-enrolled"},
    "disk-unencrypted": {"disk-root-encrypted", "disk-swap-encrypted"},
    "firewall-off": {"firewall-active", "firewall-inbound-deny"},
    "stale-patches": {"os-security-updates", "os-version-minimum-linux"},
}


def test_the_default_policy_has_exactly_the_rules_asked_for() -> None:
    policy = load_default_policy()

    shipped = {
        rule.id: (rule.fact, rule.operator.value, rule.operand, rule.severity.value) for rule in policy.rules
    }
    assert shipped == SHIPPED


def test_modem_and_sim_rules_apply_to_prison_laptops_only() -> None:
    for rule in load_default_policy().rules:
        if rule.id in MODEM_RULES:
            assert rule.device_kinds == (DeviceKind.PRISON_LAPTOP,), rule.id
        else:
            assert set(rule.device_kinds) == set(DeviceKind), rule.id


def test_every_profile_is_covered() -> None:
    assert set(FAILS) == set(PROFILES)


@pytest.mark.parametrize("profile", sorted(FAILS))
def test_laptop_profile_fails_exactly_its_rules(profile: str) -> None:
    facts = simulated_facts(profile, enrolled=LAPTOP)

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    failed = {r.rule_id for r in result.failures}
    assert failed == FAILS[profile]
    assert all(r.outcome is RuleOutcome.FAIL for r in result.failures)
    assert result.compliant is (profile == "compliant")
    assert result.skipped == ("os-version-minimum-windows",)
    passed = {r.rule_id for r in result.results if r.outcome is RuleOutcome.PASS}
    assert passed == set(SHIPPED) - FAILS[profile] - {"os-version-minimum-windows"}


@pytest.mark.parametrize("profile", sorted(set(FAILS) - {"compliant"}))
def test_failed_rules_show_the_actual_value_in_their_remediation(profile: str) -> None:
    facts = simulated_facts(profile, enrolled=LAPTOP)

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    for failure in result.failures:
        assert failure.actual == facts[failure.fact].value
        assert failure.remediation is not None
        assert display(failure.actual) in failure.remediation, failure.rule_id
        assert "{" not in failure.remediation


def test_sim_pin_off_remediation_reads_as_written() -> None:
    facts = simulated_facts("sim-pin-off", enrolled=LAPTOP)

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    assert result.result("sim-pin-lock").remediation == (
        "Turn on the SIM PIN lock (currently enabled locks: none)."
    )


def test_wrong_sim_remediation_names_the_sim_found() -> None:
    facts = simulated_facts("wrong-sim", enrolled=LAPTOP)

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    found = facts["sim.iccid"].value
    assert isinstance(found, str) and found != LAPTOP.iccid
    remediation = result.result("sim-iccid-enrolled").remediation
    assert remediation is not None
    assert remediation.startswith(
        f"The SIM card must be the one enrolled with this laptop (ICCID found: {found})."
    )


def test_stale_patches_block_and_old_os_only_warns() -> None:
    facts = simulated_facts("stale-patches", enrolled=LAPTOP)

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    assert [r.rule_id for r in result.blocking] == ["os-security-updates"]
    assert [r.rule_id for r in result.warnings] == ["os-version-minimum-linux"]
    assert result.result("os-security-updates").remediation == (
        "Security updates must be installed (pending: 7). Connect to the network, install the "
        "updates and restart, then check again."
    )


@pytest.mark.parametrize("profile", sorted(FAILS))
def test_room_endpoints_skip_modem_and_sim_rules(profile: str) -> None:
    facts = simulated_facts(profile, enrolled=ROOM)

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=ROOM)

    assert MODEM_RULES <= set(result.skipped)
    assert {r.rule_id for r in result.failures} == FAILS[profile] - MODEM_RULES


def test_room_endpoint_without_a_modem_is_compliant() -> None:
    facts = {
        name: fact
        for name, fact in simulated_facts("compliant", enrolled=ROOM).items()
        if not name.startswith(("modem.", "sim."))
    }

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=ROOM)

    assert result.compliant is True


def test_laptop_without_its_modem_is_blocked() -> None:
    facts = {
        name: fact
        for name, fact in simulated_facts("compliant", enrolled=LAPTOP).items()
        if not name.startswith(("modem.", "sim."))
    }
    facts["modem.present"] = Fact(name="modem.present", status=FactStatus.FAIL, value=False)

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    assert result.compliant is False
    assert result.result("modem-present").outcome is RuleOutcome.FAIL
    unknown = {r.rule_id for r in result.failures if r.outcome is RuleOutcome.UNKNOWN}
    assert unknown == MODEM_RULES - {"modem-present"}


def test_sim_waiting_for_its_pin_is_blocked() -> None:
    facts = simulated_facts("compliant", enrolled=LAPTOP)
    facts["modem.unlock_required"] = Fact(
        name="modem.unlock_required", status=FactStatus.FAIL, value="sim-pin"
    )

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    assert {r.rule_id for r in result.failures} == {"sim-unlocked"}
    assert "(waiting for: sim-pin)" in (result.result("sim-unlocked").remediation or "")


@pytest.mark.parametrize(("delay", "failing"), [(0, "screen-lock-idle-set"), (900, "screen-lock-idle-max")])
def test_screen_lock_delay_must_be_between_1_and_300_seconds(delay: int, failing: str) -> None:
    facts = simulated_facts("compliant", enrolled=LAPTOP)
    facts["screen_lock.idle_delay_s"] = Fact(
        name="screen_lock.idle_delay_s", status=FactStatus.PASS, value=delay
    )

    result = evaluate(load_default_policy(), facts, platform="linux", enrolled=LAPTOP)

    assert {r.rule_id for r in result.failures} == {failing}


def test_windows_laptop_is_judged_with_the_windows_version_rule() -> None:
    facts = simulated_facts("compliant", enrolled=LAPTOP, platform="windows")

    result = evaluate(load_default_policy(), facts, platform="windows", enrolled=LAPTOP)

    assert result.compliant is True
    assert result.skipped == ("os-version-minimum-linux",)
    assert result.result("os-version-minimum-windows").outcome is RuleOutcome.PASS


def test_every_block_rule_blocks_when_its_fact_is_missing() -> None:
    policy = load_default_policy()
    for rule in policy.rules:
        facts = simulated_facts("compliant", enrolled=LAPTOP)
        del facts[rule.fact]

        result = evaluate(policy, facts, platform="linux", enrolled=LAPTOP)

        if rule.severity is Severity.BLOCK:
            assert result.compliant is False, rule.id
            assert result.result(rule.id).outcome is RuleOutcome.UNKNOWN
        elif rule.id in {r.rule_id for r in result.results}:
            assert result.compliant is True, rule.id


def test_docs_describe_every_shipped_rule() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "policy.md").read_text(encoding="utf-8")

    for rule in load_default_policy().rules:
        assert f"`{rule.id}`" in docs, rule.id
    for operator in Operator:
        assert f"`{operator.value}`" in docs, operator.value
