"""Posture facts: what a collector observed on the device, judged on its own terms.

A fact is one observation (``disk.root_encrypted``, ``modem.enabled_locks``…) with the
value actually seen and a status. ``unknown`` means the collector could not tell (tool
missing, output it could not parse, permission denied); policy evaluation never lets an
``unknown`` fact pass a rule.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JsonValue = str | int | float | bool | None | list[Any] | dict[str, Any]


class FactStatus(StrEnum):
    """The collector's own verdict on a fact."""

    PASS = "pass"  # noqa: S105 - not a password
    FAIL = "fail"
    UNKNOWN = "unknown"


class Fact(BaseModel):
    """One observation about the device, with the value actually seen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$", max_length=100)
    status: FactStatus
    value: JsonValue = None
    detail: str | None = Field(default=None, max_length=500)
    source: str | None = Field(default=None, max_length=100)

    @classmethod
    def unknown(cls, name: str, detail: str, source: str | None = None) -> Fact:
        """A fact the collector could not establish."""
        return cls(name=name, status=FactStatus.UNKNOWN, value=None, detail=detail, source=source)


FactSet = dict[str, Fact]
"""Facts keyed by name, as carried in an attestation report."""
