"""Each operator on real fact values, and the rule that ``unknown`` never passes."""

from __future__ import annotations

from typing import Any

import pytest

from device_policy.errors import UnsupportedPlatform
from device_policy.facts import Fact, FactSet, FactStatus
from device_policy.policy import (
    DeviceKind,
    EnrolledIdentity,
    Policy,
    RuleOutcome,
    Severity,
    evaluate,
)

LAPTOP = EnrolledIdentity(
    device_id="lap-0007",
    device_kind=DeviceKind.PRISON_LAPTOP,
    iccid="8944110000000000017",
    imsi="234150000000017",
    imei="356938035643817",
)


def policy_with(
    operator: str,
    operand: Any = None,
    *,
    fact: str = "x.value",
    severity: str = "block",
    platforms: tuple[str, ...] = ("any",),
    remediation: str = "Fix it (now {actual}, want {expected})",
) -> Policy:
    rule: dict[str, Any] = {
        "id": "the-rule",
        "title": "The rule",
        "severity": severity,
        "platforms": list(platforms),
        "fact": fact,
        "operator": operator,
        "remediation": remediation,
    }
    if operand is not None:
        rule["operand"] = operand
    return Policy.model_validate(
        {"version": "2026.11.1", "id": "ops", "description": "operators", "rules": [rule]}
    )


def facts_with(value: Any, *, name: str = "x.value", status: FactStatus = FactStatus.PASS) -> FactSet:
    return {name: Fact(name=name, status=status, value=value, source="test")}


def outcome(operator: str, operand: Any, actual: Any) -> RuleOutcome:
    result = evaluate(policy_with(operator, operand), facts_with(actual), platform="linux", enrolled=LAPTOP)
    return result.results[0].outcome


PASS, FAIL, UNKNOWN = RuleOutcome.PASS, RuleOutcome.FAIL, RuleOutcome.UNKNOWN


@pytest.mark.parametrize(
    ("operator", "operand", "actual", "expected"),
    [
        ("eq", 0, 0, PASS),
        ("eq", 0, 3, FAIL),
        ("eq", "none", "none", PASS),
        ("eq", "none", "sim-pin", FAIL),
        ("eq", 1, True, UNKNOWN),  # True is not 1
        ("eq", 0, "0", UNKNOWN),  # nor is "0" the number 0
        ("eq", 2, 2.0, PASS),
        ("ne", "disabled", "enabled", PASS),
        ("ne", "disabled", "disabled", FAIL),
        ("ne", "disabled", 7, UNKNOWN),
        ("in", ["debian", "ubuntu"], "debian", PASS),
        ("in", ["debian", "ubuntu"], "fedora", FAIL),
        ("in", [1, 2], True, UNKNOWN),
        ("not_in", ["sim-puk", "sim-pin"], "none", PASS),
        ("not_in", ["sim-puk", "sim-pin"], "sim-pin", FAIL),
        ("not_in", ["sim-puk"], ["sim-puk"], UNKNOWN),
        ("contains", "sim", ["sim", "ph-fsim"], PASS),
        ("contains", "sim", ["ph-fsim"], FAIL),
        ("contains", "sim", [], FAIL),
        ("contains", "sim", "sim,net", PASS),
        ("contains", "sim", 5, UNKNOWN),
        ("contains", 1, [True], FAIL),  # True is not 1 inside lists either
        ("gte", 1, 1, PASS),
        ("gte", 1, 0, FAIL),
        ("gte", 1, "5", UNKNOWN),
        ("gte", 1, False, UNKNOWN),
        ("lte", 300, 300, PASS),
        ("lte", 300, 299.5, PASS),
        ("lte", 300, 301, FAIL),
        ("lte", 300, None, UNKNOWN),
        ("is_true", None, True, PASS),
        ("is_true", None, False, FAIL),
        ("is_true", None, 1, UNKNOWN),
        ("is_true", None, "true", UNKNOWN),
        ("is_false", None, False, PASS),
        ("is_false", None, True, FAIL),
        ("is_false", None, 0, UNKNOWN),
        ("version_gte", "12", "12", PASS),
        ("version_gte", "12", "12.0", PASS),
        ("version_gte", "12", "13.1", PASS),
        ("version_gte", "12", "11.9", FAIL),
        ("version_gte", "12.4", "12.10", PASS),  # numeric, not string, comparison
        ("version_gte", "10.0.19045", "10.0.22631", PASS),
        ("version_gte", "10.0.19045", "10.0.19044", FAIL),
        ("version_gte", "12", "24.04 LTS", PASS),
        ("version_gte", "12", "bookworm", UNKNOWN),
        ("version_gte", "12", 12, UNKNOWN),
    ],
)
def test_operator(operator: str, operand: Any, actual: Any, expected: RuleOutcome) -> None:
    assert outcome(operator, operand, actual) is expected


@pytest.mark.parametrize(
    ("reference", "actual", "expected"),
    [
        ("enrolled.iccid", "8944110000000000017", PASS),
        ("enrolled.iccid", "8944999999999999999", FAIL),
        ("enrolled.imsi", "234150000000017", PASS),
        ("enrolled.imsi", "234150000000018", FAIL),
        ("enrolled.imei", "356938035643817", PASS),
        ("enrolled.imei", 356938035643817, UNKNOWN),
    ],
)
def test_matches_enrolled_compares_with_the_enrolment(
    reference: str, actual: Any, expected: RuleOutcome
) -> None:
    assert outcome("matches_enrolled", reference, actual) is expected


def test_matches_enrolled_without_an_enrolled_value_is_unknown() -> None:
    no_sim = LAPTOP.model_copy(update={"iccid": None})

    result = evaluate(
        policy_with("matches_enrolled", "enrolled.iccid"),
        facts_with("8944110000000000017"),
        platform="linux",
        enrolled=no_sim,
    )

    assert result.results[0].outcome is UNKNOWN
    assert result.results[0].detail == "the device has no enrolled.iccid on record"
    assert result.compliant is False


# --- unknown never passes ----------------------------------------------------------------

NEGATIVE_RULES = [
    ("ne", "disabled"),
    ("not_in", ["sim-pin"]),
    ("is_false", None),
    ("lte", 300),
]


@pytest.mark.parametrize(("operator", "operand"), NEGATIVE_RULES)
def test_a_missing_fact_is_unknown_and_blocks(operator: str, operand: Any) -> None:
    result = evaluate(policy_with(operator, operand), {}, platform="linux", enrolled=LAPTOP)

    only = result.results[0]
    assert only.outcome is UNKNOWN
    assert only.detail == "the device did not report this fact"
    assert only.remediation == f"Fix it (now unknown, want {operand_text(operand)})"
    assert result.compliant is False


@pytest.mark.parametrize(("operator", "operand"), NEGATIVE_RULES)
def test_a_fact_the_collector_could_not_establish_is_unknown(operator: str, operand: Any) -> None:
    facts = {"x.value": Fact.unknown("x.value", "permission denied reading /sys", source="test")}

    result = evaluate(policy_with(operator, operand), facts, platform="linux", enrolled=LAPTOP)

    assert result.results[0].outcome is UNKNOWN
    assert result.results[0].detail == "the collector could not tell: permission denied reading /sys"
    assert result.compliant is False


def test_unknown_status_wins_over_a_value_that_would_pass() -> None:
    facts = facts_with(True, status=FactStatus.UNKNOWN)

    result = evaluate(policy_with("is_true"), facts, platform="linux", enrolled=LAPTOP)

    assert result.results[0].outcome is UNKNOWN
    assert result.compliant is False


def test_a_fact_with_no_value_is_unknown() -> None:
    result = evaluate(policy_with("ne", "x"), facts_with(None), platform="linux", enrolled=LAPTOP)

    assert result.results[0].outcome is UNKNOWN
    assert result.results[0].detail == "the fact has no value"


def test_a_value_of_the_wrong_kind_says_what_was_expected() -> None:
    result = evaluate(policy_with("is_true"), facts_with("yes"), platform="linux", enrolled=LAPTOP)

    assert result.results[0].outcome is UNKNOWN
    assert result.results[0].detail == "value is a string, the rule needs a boolean"


def test_a_fact_filed_under_another_name_is_not_used() -> None:
    facts = {"x.value": Fact(name="x.other", status=FactStatus.PASS, value=True)}

    result = evaluate(policy_with("is_true"), facts, platform="linux", enrolled=LAPTOP)

    assert result.results[0].outcome is UNKNOWN


def test_collector_fail_status_does_not_override_the_value() -> None:
    # The policy judges the value; the collector's own verdict only matters when unknown.
    facts = facts_with(300, status=FactStatus.FAIL)

    result = evaluate(policy_with("lte", 300), facts, platform="linux", enrolled=LAPTOP)

    assert result.results[0].outcome is PASS


# --- severity, platforms, results ----------------------------------------------------------


def test_warn_failures_are_reported_but_do_not_block() -> None:
    policy = policy_with("eq", 0, severity="warn")

    result = evaluate(policy, facts_with(4), platform="linux", enrolled=LAPTOP)

    assert result.compliant is True
    assert [r.rule_id for r in result.warnings] == ["the-rule"]
    assert result.failures == result.warnings
    assert result.blocking == ()


def test_warn_unknown_does_not_block_either() -> None:
    result = evaluate(policy_with("eq", 0, severity="warn"), {}, platform="linux", enrolled=LAPTOP)

    assert result.compliant is True
    assert result.results[0].outcome is UNKNOWN


def test_block_failure_makes_the_device_non_compliant() -> None:
    result = evaluate(policy_with("eq", 0), facts_with(4), platform="linux", enrolled=LAPTOP)

    assert result.compliant is False
    assert [r.rule_id for r in result.blocking] == ["the-rule"]
    assert result.blocking[0].severity is Severity.BLOCK


def test_passing_rules_carry_no_remediation() -> None:
    result = evaluate(policy_with("eq", 0), facts_with(0), platform="linux", enrolled=LAPTOP)

    assert result.results[0].remediation is None
    assert result.results[0].actual == 0


def test_remediation_shows_the_actual_value_readably() -> None:
    policy = policy_with(
        "contains",
        "sim",
        remediation="Turn on the SIM PIN lock (currently enabled locks: {actual})",
    )

    with_locks = evaluate(policy, facts_with(["ph-sim", "net"]), platform="linux", enrolled=LAPTOP)
    without = evaluate(policy, facts_with([]), platform="linux", enrolled=LAPTOP)

    assert with_locks.results[0].remediation == (
        "Turn on the SIM PIN lock (currently enabled locks: ph-sim, net)"
    )
    assert without.results[0].remediation == ("Turn on the SIM PIN lock (currently enabled locks: none)")


def test_remediation_keeps_control_characters_from_the_device_out() -> None:
    result = evaluate(
        policy_with("eq", "none"), facts_with("sim\x1b[31m-pin"), platform="linux", enrolled=LAPTOP
    )

    assert result.results[0].remediation == "Fix it (now sim?[31m-pin, want none)"


def test_rules_for_another_platform_are_skipped_and_listed() -> None:
    policy = policy_with("is_true", platforms=("windows",))

    result = evaluate(policy, facts_with(False), platform="linux", enrolled=LAPTOP)

    assert result.results == ()
    assert result.skipped == ("the-rule",)
    assert result.compliant is True


def test_an_unsupported_platform_is_refused_rather_than_skipping_rules() -> None:
    with pytest.raises(UnsupportedPlatform) as caught:
        evaluate(policy_with("is_true"), facts_with(True), platform="macos", enrolled=LAPTOP)

    assert caught.value.code == "unsupported_platform"
    assert str(caught.value) == 'Platform "macos" has no policy rules; expected one of linux, windows'


def test_result_names_the_policy_it_was_evaluated_against() -> None:
    policy = policy_with("is_true")

    result = evaluate(policy, facts_with(True), platform="windows", enrolled=LAPTOP)

    assert (result.policy_id, result.policy_version) == ("ops", "2026.11.1")
    assert len(result.policy_hash) == 64
    assert result.result("the-rule").outcome is PASS
    with pytest.raises(KeyError):
        result.result("no-such-rule")


def operand_text(operand: Any) -> str:
    if operand is None:
        return "unknown"
    if isinstance(operand, list):
        return ", ".join(operand)
    return str(operand)
