"""What each operator means, applied to one fact value.

Types are never coerced: a string ``"1"`` is not the number ``1`` and ``true`` is not
``1``. A value of the wrong kind gives an indeterminate check (``passed is None``),
which evaluation reports as ``unknown`` — and ``unknown`` never passes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from device_policy.policy.identity import EnrolledIdentity, enrolled_value
from device_policy.policy.model import Operator, value_kind

_LEADING_VERSION = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class Check:
    """The result of one comparison: True, False, or None when it cannot be decided."""

    passed: bool | None
    detail: str | None = None


def apply_operator(operator: Operator, actual: Any, operand: Any, *, enrolled: EnrolledIdentity) -> Check:
    """Compare a fact's value with a rule's operand."""
    match operator:
        case Operator.IS_TRUE | Operator.IS_FALSE:
            if not isinstance(actual, bool):
                return _wrong_kind(actual, "boolean")
            return Check(actual is (operator is Operator.IS_TRUE))
        case Operator.EQ | Operator.NE:
            if value_kind(actual) != value_kind(operand):
                return _wrong_kind(actual, value_kind(operand))
            equal = _equal(actual, operand)
            return Check(equal if operator is Operator.EQ else not equal)
        case Operator.IN | Operator.NOT_IN:
            expected_kind = value_kind(operand[0])
            if value_kind(actual) != expected_kind:
                return _wrong_kind(actual, expected_kind)
            member = any(_equal(actual, item) for item in operand)
            return Check(member if operator is Operator.IN else not member)
        case Operator.CONTAINS:
            return _contains(actual, operand)
        case Operator.GTE | Operator.LTE:
            if value_kind(actual) != "number":
                return _wrong_kind(actual, "number")
            if not math.isfinite(actual):
                return Check(None, "value is not a finite number")
            return Check(actual >= operand if operator is Operator.GTE else actual <= operand)
        case Operator.VERSION_GTE:
            if not isinstance(actual, str):
                return _wrong_kind(actual, "string")
            found = _LEADING_VERSION.match(actual)
            if found is None:
                return Check(None, "value does not start with a version number")
            return Check(_version(found.group(1)) >= _version(operand))
        case Operator.MATCHES_ENROLLED:
            expected = enrolled_value(enrolled, operand)
            if expected is None:
                return Check(None, f"the device has no {operand} on record")
            if not isinstance(actual, str):
                return _wrong_kind(actual, "string")
            return Check(actual == expected)
    raise AssertionError(f"operator {operator} is not implemented")  # pragma: no cover


def _equal(actual: Any, expected: Any) -> bool:
    # Python says True == 1; policy does not.
    return value_kind(actual) == value_kind(expected) and bool(actual == expected)


def _contains(actual: Any, operand: Any) -> Check:
    if isinstance(actual, list | tuple):
        return Check(any(_equal(item, operand) for item in actual))
    if isinstance(actual, str) and isinstance(operand, str):
        return Check(operand in actual)
    return _wrong_kind(actual, "list")


def _version(text: str) -> tuple[int, ...]:
    parts = [int(part) for part in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()  # "12.0" and "12" are the same version
    return tuple(parts)


def _wrong_kind(actual: Any, expected: str) -> Check:
    return Check(None, f"value is a {value_kind(actual)}, the rule needs a {expected}")
