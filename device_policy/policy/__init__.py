"""Policy as code: load a versioned YAML policy, hash it, evaluate it against facts."""

from device_policy.policy.evaluate import PolicyResult, RuleOutcome, RuleResult, evaluate
from device_policy.policy.identity import DeviceKind, EnrolledIdentity, Platform
from device_policy.policy.loader import (
    load_default_policy,
    load_policy,
    parse_policy,
    policy_hash,
)
from device_policy.policy.model import Operator, Policy, Rule, Severity

__all__ = [
    "DeviceKind",
    "EnrolledIdentity",
    "Operator",
    "Platform",
    "Policy",
    "PolicyResult",
    "Rule",
    "RuleOutcome",
    "RuleResult",
    "Severity",
    "evaluate",
    "load_default_policy",
    "load_policy",
    "parse_policy",
    "policy_hash",
]
