"""Reading the Windows registry through ``reg query``, the way an unprivileged agent can.

``reg query KEY [/v NAME]`` prints the key's path, then one indented line per value:
``    Name    REG_TYPE    data``. A missing key or value exits 1 with an error on
stderr; ``Access is denied`` is told apart from "not there", which is often an answer
(no screen-saver policy set).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.invoke import Problem
from device_policy.collectors.judge import error_line, is_privilege_error, run_problem
from device_policy.collectors.runner import CommandRunner
from device_policy.collectors.text import clean_text, parse_int

_VALUE_LINE = re.compile(r"^\s+(?P<name>.*?)\s{2,}(?P<type>REG_[A-Z_0-9]+)(?:\s{2,}(?P<data>.*?))?\s*$")

RegData = int | str | list[str]


@dataclass(frozen=True)
class RegValue:
    """One registry value: its type and data (DWORD/QWORD as int, MULTI_SZ as list)."""

    type: str
    data: RegData


@dataclass(frozen=True)
class RegQuery:
    """What ``parse("reg-query", …)`` returns: the values of the first key listed."""

    key: str | None
    values: dict[str, RegValue]

    def get(self, name: str) -> RegData | None:
        """A value's data, matching the name case-insensitively as Windows does."""
        for candidate, value in self.values.items():
            if candidate.lower() == name.lower():
                return value.data
        return None

    def get_int(self, name: str) -> int | None:
        """A value as an integer (DWORD, or a REG_SZ holding digits)."""
        data = self.get(name)
        if isinstance(data, int):
            return data
        return parse_int(data) if isinstance(data, str) else None


def _data(reg_type: str, raw: str) -> RegData:
    if reg_type in ("REG_DWORD", "REG_QWORD"):
        number = parse_int(raw)
        return number if number is not None else raw
    if reg_type == "REG_MULTI_SZ":
        return [part for part in raw.split("\\0") if part]
    return raw


def parse_reg_query(text: str | bytes) -> RegQuery:
    """Parse ``reg query`` output (values of the first key; subkeys are ignored)."""
    key: str | None = None
    values: dict[str, RegValue] = {}
    for line in clean_text(text).splitlines():
        if not line.strip():
            continue
        if line.startswith("HKEY_"):
            if key is not None:
                break  # a subkey follows; its values are not this key's
            key = line.strip()
            continue
        match = _VALUE_LINE.match(line)
        if match and key is not None:
            values[match.group("name")] = RegValue(
                match.group("type"), _data(match.group("type"), match.group("data") or "")
            )
    if key is None:
        raise UnparsableOutput("reg", "no HKEY_ line")
    return RegQuery(key, values)


def reg_argv(key: str, value: str | None = None) -> tuple[str, ...]:
    """``reg query KEY [/v VALUE]``."""
    return ("reg", "query", key) if value is None else ("reg", "query", key, "/v", value)


@dataclass(frozen=True)
class RegAnswer:
    """A registry read: the values, ``missing`` when the key/value does not exist, or a problem."""

    query: RegQuery | None = None
    missing: bool = False
    problem: str | None = None


async def read_registry(runner: CommandRunner, key: str, value: str | None = None) -> RegAnswer:
    """Run ``reg query`` and say whether the key/value exists, was denied, or what it holds."""
    result = await runner.run(reg_argv(key, value), timeout=10)
    if result.failure is None and result.returncode == 1:
        message = error_line(result.stderr) or error_line(result.stdout)
        if is_privilege_error(message):
            return RegAnswer(problem=f"reg query was denied for {key}")
        return RegAnswer(missing=True)
    problem = run_problem(result, "reg")
    if problem:
        return RegAnswer(problem=problem)
    try:
        return RegAnswer(query=parse_reg_query(result.stdout))
    except UnparsableOutput as exc:
        return RegAnswer(problem=exc.detail)


async def read_registry_values(
    runner: CommandRunner, key: str, names: Sequence[str]
) -> dict[str, RegData | None] | Problem:
    """Several values of one key (``None`` where unset), or why the key could not be read."""
    answer = await read_registry(runner, key)
    if answer.problem:
        return Problem(answer.problem)
    if answer.missing or answer.query is None:
        return dict.fromkeys(names)
    query = answer.query
    return {name: query.get(name) for name in names}
