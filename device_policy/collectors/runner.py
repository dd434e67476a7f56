"""The command-runner seam: collectors ask a :class:`CommandRunner` to run a program.

The real runner starts the program directly (never through a shell), bounds it with a
timeout and turns "not installed", "not allowed" and "too slow" into a
:class:`CommandResult` with a :class:`RunFailure` — never an exception — so that each
collector can report an ``unknown`` fact saying why. Tests use
:class:`~device_policy.collectors.fakes.FakeRunner` with saved outputs instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from device_policy.collectors.text import decode_output

log = logging.getLogger("telemed.device_policy.collectors")

# Shell conventions, so that a result reads the same whether it came from here or a shell.
EXIT_TIMEOUT = 124
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

DEFAULT_TIMEOUT = 10.0
MAX_OUTPUT_BYTES = 4 * 1024 * 1024


class RunFailure(StrEnum):
    """Why a program produced no answer at all (as opposed to answering with an error)."""

    NOT_FOUND = "not_found"
    PERMISSION = "permission"
    TIMEOUT = "timeout"
    OS_ERROR = "os_error"


@dataclass(frozen=True)
class CommandResult:
    """What a program printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str
    failure: RunFailure | None = None

    @property
    def ok(self) -> bool:
        """The program ran and exited with status 0."""
        return self.failure is None and self.returncode == 0

    @classmethod
    def not_found(cls, program: str) -> CommandResult:
        """The result for a program that is not installed."""
        return cls(EXIT_NOT_FOUND, "", f"{program}: command not found", RunFailure.NOT_FOUND)


class CommandRunner(Protocol):
    """Runs one program with arguments and returns its output; never raises for the program."""

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run ``argv`` (no shell) and give up after ``timeout`` seconds."""
        ...


def _default_env_overrides() -> dict[str, str]:
    # Linux tools translate their messages; collectors parse the untranslated ones.
    return {} if sys.platform == "win32" else {"LC_ALL": "C", "LANG": "C"}


class SubprocessRunner:
    """Runs programs on this machine with :func:`asyncio.create_subprocess_exec`."""

    def __init__(
        self,
        *,
        env_overrides: Mapping[str, str] | None = None,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        overrides = _default_env_overrides() if env_overrides is None else env_overrides
        self._env = {**os.environ, **overrides}
        self._max_output = max_output_bytes

    async def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        """Run ``argv`` without a shell; a missing program or a timeout is a result, not an error."""
        if not argv:
            raise ValueError("argv must name a program")
        program = argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
            )
        except FileNotFoundError:
            return CommandResult.not_found(program)
        except PermissionError:
            return CommandResult(
                EXIT_NOT_EXECUTABLE, "", f"{program}: permission denied", RunFailure.PERMISSION
            )
        except OSError as exc:
            log.warning("could not start %s: %s", program, exc.strerror or type(exc).__name__)
            return CommandResult(EXIT_NOT_EXECUTABLE, "", f"{program}: could not start", RunFailure.OS_ERROR)
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):  # it may have just exited
                proc.kill()
            await proc.wait()
            log.warning("%s timed out after %.1f s", program, timeout)
            return CommandResult(
                EXIT_TIMEOUT, "", f"{program}: timed out after {timeout:g} s", RunFailure.TIMEOUT
            )
        return CommandResult(
            proc.returncode if proc.returncode is not None else -1,
            decode_output(stdout[: self._max_output]),
            decode_output(stderr[: self._max_output]),
        )
