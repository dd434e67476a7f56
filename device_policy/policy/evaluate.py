"""Evaluate a policy against a device's facts: one outcome per applicable rule.

``unknown`` (fact missing, collector could not tell, value of the wrong kind) never
passes: a ``block`` rule that is unknown makes the device non-compliant just as a
failure does. ``warn`` rules are reported and never block.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from device_policy.facts import Fact, FactSet, FactStatus, JsonValue
from device_policy.policy.identity import DeviceKind, EnrolledIdentity, Platform, parse_platform
from device_policy.policy.loader import policy_hash
from device_policy.policy.model import Operator, Policy, Rule, Severity
from device_policy.policy.operators import Check, apply_operator
from device_policy.policy.remediation import display, render


class RuleOutcome(StrEnum):
    """How one rule went; ``unknown`` never counts as a pass."""

    PASS = "pass"  # noqa: S105 - not a password
    FAIL = "fail"
    UNKNOWN = "unknown"


class RuleResult(BaseModel):
    """How one rule went, with the value seen and (unless it passed) what to do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    title: str
    severity: Severity
    fact: str
    operator: Operator
    outcome: RuleOutcome
    actual: JsonValue = None
    remediation: str | None = None
    detail: str | None = None

    @property
    def blocking(self) -> bool:
        """Whether this result makes the device non-compliant."""
        return self.severity is Severity.BLOCK and self.outcome is not RuleOutcome.PASS


class PolicyResult(BaseModel):
    """The verdict for one device: compliant only if no block rule failed or was unknown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_id: str
    policy_version: str
    policy_hash: str
    platform: Platform
    device_kind: DeviceKind
    compliant: bool
    results: tuple[RuleResult, ...]
    skipped: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[RuleResult, ...]:
        """Every rule that did not pass (failed or unknown), warnings included."""
        return tuple(r for r in self.results if r.outcome is not RuleOutcome.PASS)

    @property
    def blocking(self) -> tuple[RuleResult, ...]:
        """The rules that make the device non-compliant."""
        return tuple(r for r in self.results if r.blocking)

    @property
    def warnings(self) -> tuple[RuleResult, ...]:
        """``warn`` rules that did not pass."""
        return tuple(r for r in self.failures if r.severity is Severity.WARN)

    def result(self, rule_id: str) -> RuleResult:
        """The result of one rule, by id (KeyError if it was skipped or does not exist)."""
        for item in self.results:
            if item.rule_id == rule_id:
                return item
        raise KeyError(rule_id)


def evaluate(
    policy: Policy, facts: FactSet, *, platform: Platform | str, enrolled: EnrolledIdentity
) -> PolicyResult:
    """Check every rule that applies to this platform and the enrolled device kind."""
    on_platform = parse_platform(platform)
    results: list[RuleResult] = []
    skipped: list[str] = []
    for rule in policy.rules:
        if not rule.applies_to(platform=on_platform, device_kind=enrolled.device_kind):
            skipped.append(rule.id)
            continue
        results.append(_evaluate_rule(rule, facts.get(rule.fact), enrolled))
    return PolicyResult(
        policy_id=policy.id,
        policy_version=policy.version,
        policy_hash=policy_hash(policy),
        platform=on_platform,
        device_kind=enrolled.device_kind,
        compliant=not any(r.blocking for r in results),
        results=tuple(results),
        skipped=tuple(skipped),
    )


def _evaluate_rule(rule: Rule, fact: Fact | None, enrolled: EnrolledIdentity) -> RuleResult:
    actual = fact.value if fact is not None else None
    check = _check(rule, fact, enrolled)
    if check.passed is None:
        outcome = RuleOutcome.UNKNOWN
    else:
        outcome = RuleOutcome.PASS if check.passed else RuleOutcome.FAIL
    remediation = None
    if outcome is not RuleOutcome.PASS:
        remediation = render(
            rule.remediation,
            {
                "actual": display(actual),
                "expected": display(rule.operand),
                "fact": rule.fact,
                "rule_id": rule.id,
                "title": rule.title,
            },
        )
    return RuleResult(
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        fact=rule.fact,
        operator=rule.operator,
        outcome=outcome,
        actual=actual,
        remediation=remediation,
        detail=check.detail,
    )


def _check(rule: Rule, fact: Fact | None, enrolled: EnrolledIdentity) -> Check:
    if fact is None:
        return Check(None, "the device did not report this fact")
    if fact.name != rule.fact:
        return Check(None, f'the fact was filed under another name ("{fact.name}")')
    if fact.status is FactStatus.UNKNOWN:
        reason = f": {fact.detail}" if fact.detail else ""
        return Check(None, f"the collector could not tell{reason}")
    if fact.value is None:
        return Check(None, "the fact has no value")
    return apply_operator(rule.operator, fact.value, rule.operand, enrolled=enrolled)
