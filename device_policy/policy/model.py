"""The policy-as-code schema: a versioned list of rules, each one fact compared one way.

Validation is strict: unknown keys, duplicate rule ids, an operand that does not fit its
operator and unknown remediation placeholders are all refused when the policy loads, so
evaluation never meets a rule it cannot apply.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from device_policy.policy.identity import ENROLLED_REFERENCES, DeviceKind, Platform
from device_policy.policy.remediation import check_template

_NAME = r"^[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*$"
_FACT_NAME = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
VERSION_PATTERN = re.compile(r"^\d+(?:\.\d+)*$")
_MAX_LIST_OPERAND = 100


class Severity(StrEnum):
    """``block`` failures make the device non-compliant; ``warn`` failures are only reported."""

    BLOCK = "block"
    WARN = "warn"


class Operator(StrEnum):
    """How a rule compares the fact's value with its operand."""

    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    GTE = "gte"
    LTE = "lte"
    IS_TRUE = "is_true"
    IS_FALSE = "is_false"
    VERSION_GTE = "version_gte"
    MATCHES_ENROLLED = "matches_enrolled"


PlatformSelector = Literal["linux", "windows", "any"]
ALL_DEVICE_KINDS: tuple[DeviceKind, ...] = tuple(DeviceKind)


def value_kind(value: Any) -> str:
    """The JSON kind of a value: boolean, number, string, list, object or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    return "object"


class Rule(BaseModel):
    """One check: ``fact`` ``operator`` ``operand``, with its severity and remediation text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=_NAME, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    severity: Severity
    platforms: tuple[PlatformSelector, ...]
    device_kinds: tuple[DeviceKind, ...] = ALL_DEVICE_KINDS
    fact: str = Field(pattern=_FACT_NAME, max_length=100)
    operator: Operator
    operand: Any = Field(default=None, validate_default=True)
    remediation: str = Field(min_length=1, max_length=1000)

    @field_validator("platforms")
    @classmethod
    def _one_way_to_say_platforms(cls, value: tuple[PlatformSelector, ...]) -> tuple[PlatformSelector, ...]:
        # Non-empty checked here: min_length would also fire when an item is refused.
        if not value:
            raise ValueError('list at least one platform, or "any"')
        if "any" in value and len(set(value)) > 1:
            raise ValueError('"any" already covers every platform; list it alone')
        # Sorted and de-duplicated so the policy hash does not depend on list order.
        return tuple(sorted(set(value)))

    @field_validator("device_kinds")
    @classmethod
    def _sorted_kinds(cls, value: tuple[DeviceKind, ...]) -> tuple[DeviceKind, ...]:
        if not value:
            raise ValueError("list at least one device kind, or leave the key out for all")
        return tuple(sorted(set(value)))

    @field_validator("operand")
    @classmethod
    def _operand_fits_operator(cls, value: Any, info: ValidationInfo) -> Any:
        operator = info.data.get("operator")
        if operator is None:  # the operator itself was refused; that error is enough
            return value
        return _check_operand(Operator(operator), value)

    @field_validator("remediation")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        check_template(value)
        return value

    def applies_to(self, *, platform: Platform, device_kind: DeviceKind) -> bool:
        """Whether this rule is checked on this platform for this kind of device."""
        on_platform = "any" in self.platforms or platform.value in self.platforms
        return on_platform and device_kind in self.device_kinds


class Policy(BaseModel):
    """A versioned, identified set of rules (see docs/policy.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(pattern=r"^\d{4}\.\d{1,2}\.\d+$", max_length=20)
    id: str = Field(pattern=_NAME, max_length=64)
    description: str = Field(min_length=1, max_length=2000)
    rules: tuple[Rule, ...] = Field(max_length=500)

    @field_validator("rules")
    @classmethod
    def _unique_rule_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        # Checked here, not with min_length, which pydantic also reports when a rule fails.
        if not rules:
            raise ValueError("a policy needs at least one rule")
        first_seen: dict[str, int] = {}
        for index, rule in enumerate(rules):
            if rule.id in first_seen:
                raise PydanticCustomError(
                    "duplicate_rule_id",
                    "duplicate rule id (rules #{first} and #{second})",
                    {"rule_id": rule.id, "first": first_seen[rule.id] + 1, "second": index + 1},
                )
            first_seen[rule.id] = index
        return rules


def _check_operand(operator: Operator, value: Any) -> Any:
    kind = value_kind(value)
    if operator in (Operator.IS_TRUE, Operator.IS_FALSE):
        if value is not None:
            raise ValueError(f'operator "{operator}" takes no operand')
        return None
    if operator in (Operator.EQ, Operator.NE, Operator.CONTAINS):
        return _scalar(operator, value)
    if operator in (Operator.GTE, Operator.LTE):
        if kind != "number" or not math.isfinite(value):
            raise ValueError(f'operator "{operator}" needs a finite number, not a {kind}')
        return value
    if operator in (Operator.IN, Operator.NOT_IN):
        if kind != "list" or not value:
            raise ValueError(f'operator "{operator}" needs a non-empty list, not a {kind}')
        if len(value) > _MAX_LIST_OPERAND:
            raise ValueError(f'operator "{operator}" takes at most {_MAX_LIST_OPERAND} values')
        items = [_scalar(operator, item) for item in value]
        if len({value_kind(item) for item in items}) > 1:
            raise ValueError(f'operator "{operator}" needs list values all of one kind')
        return tuple(items)
    if operator is Operator.VERSION_GTE:
        if kind != "string" or not VERSION_PATTERN.match(value):
            raise ValueError(f'operator "{operator}" needs a dotted version string like "12.4"')
        return value
    if operator is Operator.MATCHES_ENROLLED:
        if kind != "string" or value not in ENROLLED_REFERENCES:
            allowed = ", ".join(sorted(ENROLLED_REFERENCES))
            raise ValueError(f'operator "{operator}" needs one of {allowed}')
        return value
    raise AssertionError(f"operator {operator} has no operand check")  # pragma: no cover


def _scalar(operator: Operator, value: Any) -> Any:
    kind = value_kind(value)
    if kind not in ("boolean", "number", "string"):
        raise ValueError(f'operator "{operator}" needs a string, number or boolean, not a {kind}')
    if kind == "number" and not math.isfinite(value):
        raise ValueError(f'operator "{operator}" needs a finite number')
    return value
