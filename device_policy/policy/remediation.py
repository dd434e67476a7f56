"""Remediation text templates: ``str.format`` placeholders from a fixed list, nothing else.

A template may use ``{actual}``, ``{expected}``, ``{fact}``, ``{rule_id}`` and ``{title}``;
attribute access, indexing, conversions and format specs are refused when the policy is
loaded, so rendering a template can never reach beyond these strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from string import Formatter
from typing import Any

PLACEHOLDERS = frozenset({"actual", "expected", "fact", "rule_id", "title"})
_MAX_SHOWN = 200


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` uses only plain, known placeholders."""
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"remediation template does not parse: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            allowed = ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
            raise ValueError(f'unknown placeholder "{{{field}}}"; use one of {allowed}')
        if spec or conversion:
            raise ValueError(f'placeholder "{{{field}}}" takes no format spec or conversion')


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill a checked template; a placeholder without a value is left as written."""
    return template.format_map(_LeaveMissing(values))


def display(value: Any) -> str:
    """How a fact value reads in remediation text: short, printable, never a repr."""
    text = _display(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    return text


def _display(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(_display(item) for item in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{key}={_display(item)}" for key, item in value.items()) or "none"
    # Values come from the device: keep control characters out of the text people read.
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))


class _LeaveMissing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
