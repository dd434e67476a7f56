"""Run a tool and parse what it printed; any failure comes back as the reason, not an error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from device_policy.collectors.errors import UnparsableOutput
from device_policy.collectors.judge import run_problem
from device_policy.collectors.runner import CommandRunner

T = TypeVar("T")


async def run_and_parse(
    runner: CommandRunner,
    argv: Sequence[str],
    parse: Callable[[str], T],
    *,
    tool: str,
    timeout: float = 10.0,
) -> T | Problem:
    """The parsed output of ``argv``, or a :class:`Problem` saying why there is none."""
    result = await runner.run(argv, timeout)
    problem = run_problem(result, tool)
    if problem:
        return Problem(problem)
    try:
        return parse(result.stdout)
    except UnparsableOutput as exc:
        return Problem(exc.detail)


class Problem(str):
    """Why a tool gave no usable answer (a ``str`` subclass, so it reads as the reason)."""

    __slots__ = ()
