"""Building facts: a collector's verdict on a value, or ``unknown`` with the reason.

Details say what was seen or why nothing could be seen; they never carry identifiers
(IMEI, ICCID, IMSI) or raw output, which only ever travel as a fact's ``value``.
"""

from __future__ import annotations

from collections.abc import Iterable

from device_policy.collectors.runner import CommandResult, RunFailure
from device_policy.collectors.text import clean_text, first_line
from device_policy.facts import Fact, FactStatus, JsonValue

MAX_DETAIL = 500
_PRIVILEGE_HINTS = (
    "denied",  # "Permission denied", "Access is denied", "…resource was denied"
    "not permitted",
    "must be root",
    "need to be root",
    "requires elevation",
    "administrative rights",
)


def clip(text: str, limit: int = MAX_DETAIL) -> str:
    """Shorten ``text`` to fit a fact's detail."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def judged(name: str, value: JsonValue, ok: bool, *, source: str, detail: str | None = None) -> Fact:
    """A fact whose status is the collector's verdict ``ok`` on ``value``."""
    return Fact(
        name=name,
        status=FactStatus.PASS if ok else FactStatus.FAIL,
        value=value,
        detail=clip(detail) if detail else None,
        source=source,
    )


def unknown(name: str, detail: str, *, source: str | None = None) -> Fact:
    """A fact the collector could not establish, and why."""
    return Fact.unknown(name, clip(detail), source=source)


def unknown_all(names: Iterable[str], detail: str, *, source: str | None = None) -> list[Fact]:
    """The same ``unknown`` verdict for several facts."""
    return [unknown(name, detail, source=source) for name in names]


def run_problem(result: CommandResult, tool: str) -> str | None:
    """Why ``result`` carries no usable answer, or ``None`` when the tool exited 0."""
    if result.failure is RunFailure.NOT_FOUND:
        return f"{tool} is not installed"
    if result.failure is RunFailure.TIMEOUT:
        return f"{tool} did not answer in time"
    if result.failure is RunFailure.PERMISSION:
        return f"{tool} could not be executed (permission denied)"
    if result.failure is not None:
        return f"{tool} could not be started"
    if result.returncode == 0:
        return None
    message = error_line(result.stderr) or error_line(result.stdout)
    hint = " (insufficient privileges)" if is_privilege_error(message) else ""
    return f"{tool} exited with status {result.returncode}{hint}" + (f": {message}" if message else "")


def error_line(text: str) -> str:
    """The line of ``text`` that reports an error, else its first line (shortened)."""
    for line in clean_text(text).splitlines():
        lowered = line.strip().lower()
        if lowered.startswith("error") or "error:" in lowered:
            return first_line(line)
    return first_line(text)


def is_privilege_error(message: str) -> bool:
    """Whether an error message says the caller lacks privileges."""
    lowered = message.lower()
    return any(hint in lowered for hint in _PRIVILEGE_HINTS)
