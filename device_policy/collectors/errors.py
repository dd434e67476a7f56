"""Errors raised by the posture collectors, part of the device_policy error tree.

::

    DevicePolicyError                    (device_policy.errors)
    └── CollectorError                500 collector_error      bug in a collector
        ├── UnknownCollector          400 unknown_collector    ask list_kinds() for a valid kind
        └── UnparsableOutput          422 unparsable_output    the saved output is not that tool's

Collectors never let these escape while collecting: a tool whose output cannot be read
becomes an ``unknown`` fact. They surface only through :func:`parse`, which the
``telemed-device parse`` command calls on a saved file. Messages name the kind or the
tool, never a fact value.
"""

from __future__ import annotations

from device_policy.errors import DevicePolicyError


class CollectorError(DevicePolicyError):
    """Base of the collector errors."""

    code, status, title = "collector_error", 500, "The posture collector failed"


class UnknownCollector(CollectorError):
    """``parse`` was asked for a kind that no parser handles."""

    code, status, title = "unknown_collector", 400, "There is no collector for that kind"

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(f'No collector parses kind "{kind}"; known kinds: {", ".join(known)}', kind=kind)
        self.kind = kind


class UnparsableOutput(CollectorError):
    """The text does not have the shape that the tool prints."""

    code, status, title = "unparsable_output", 422, "The command output could not be parsed"

    def __init__(self, tool: str, reason: str) -> None:
        super().__init__(f"Cannot parse {tool} output: {reason}", tool=tool)
        self.tool = tool
        self.reason = reason
