"""Steps of the demo story: each one runs, times itself, checks its own expectation and says
in one line what it showed.

A step is an async function returning :class:`Shown`. It raises :class:`Unexpected` when
the product did something other than what the story expects (a grant still accepted after
the end, a SIM without its PIN lock let through…); any other exception is a failure too.
After the first failure the remaining steps are reported as skipped: each builds on the
ones before it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

Fact = str | int | float | bool | None | list[str]
Outcome = Literal["passed", "failed", "skipped"]

# Error messages of libraries are written not to carry secrets; still, keep what we show short.
_MAX_ERROR_CHARS = 300


class Unexpected(Exception):
    """The product did not do what this step expects; the message says what it did instead."""

    def __init__(self, message: str, **facts: Fact) -> None:
        super().__init__(message)
        self.message = message
        self.facts = facts


@dataclass(frozen=True)
class Shown:
    """What a step showed: one line for people, facts for machines (and the e2e test)."""

    summary: str
    facts: dict[str, Fact] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """One line of the timeline."""

    key: str
    name: str
    outcome: Outcome
    seconds: float
    summary: str
    facts: dict[str, Fact] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the step did what it should."""
        return self.outcome == "passed"

    def to_json(self) -> dict[str, object]:
        """The step as a JSON object (``--json``)."""
        return {
            "key": self.key,
            "name": self.name,
            "outcome": self.outcome,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "summary": self.summary,
            "facts": self.facts,
        }


class Observer(Protocol):
    """Who watches the story unfold (the rich timeline, or nobody for ``--json``)."""

    def started(self, name: str) -> None:
        """A step began."""
        ...

    def progress(self, text: str) -> None:
        """The running step has something to say while it waits."""
        ...

    def finished(self, result: StepResult) -> None:
        """A step ended (passed, failed or skipped)."""
        ...


class QuietObserver:
    """Watches nothing."""

    def started(self, name: str) -> None:
        """A step began."""

    def progress(self, text: str) -> None:
        """The running step has something to say while it waits."""

    def finished(self, result: StepResult) -> None:
        """A step ended."""


StepFn = Callable[[], Awaitable[Shown]]


class Timeline:
    """Runs steps in order, times them, and keeps their results."""

    def __init__(self, observer: Observer | None = None) -> None:
        self.observer: Observer = observer or QuietObserver()
        self.results: list[StepResult] = []
        self._started = time.monotonic()

    @property
    def failed(self) -> bool:
        """True once any step did not pass."""
        return any(not r.ok for r in self.results)

    @property
    def ok(self) -> bool:
        """True when there were steps and every one passed."""
        return bool(self.results) and not self.failed

    @property
    def elapsed(self) -> float:
        """Seconds since the timeline began."""
        return time.monotonic() - self._started

    async def step(self, key: str, name: str, run: StepFn) -> StepResult:
        """Run one step (or skip it after an earlier failure) and record how it went."""
        if self.failed:
            result = StepResult(key=key, name=name, outcome="skipped", seconds=0.0, summary="not run")
            self._record(result)
            return result
        self.observer.started(name)
        began = time.monotonic()
        try:
            shown = await run()
        except Unexpected as exc:
            result = StepResult(
                key=key,
                name=name,
                outcome="failed",
                seconds=time.monotonic() - began,
                summary=exc.message,
                facts=exc.facts,
            )
        except Exception as exc:
            # Any error is this step's failure, shown on its line.
            result = StepResult(
                key=key,
                name=name,
                outcome="failed",
                seconds=time.monotonic() - began,
                summary=describe_error(exc),
                facts={"error": type(exc).__name__},
            )
        else:
            result = StepResult(
                key=key,
                name=name,
                outcome="passed",
                seconds=time.monotonic() - began,
                summary=shown.summary,
                facts=shown.facts,
            )
        self._record(result)
        return result

    def _record(self, result: StepResult) -> None:
        self.results.append(result)
        self.observer.finished(result)


def describe_error(exc: BaseException) -> str:
    """``Type (code): message`` in one short line."""
    code = getattr(exc, "code", None)
    label = type(exc).__name__ + (f" ({code})" if isinstance(code, str) and code else "")
    text = " ".join(str(exc).split()) or "no detail"
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 1] + "…"
    return f"{label}: {text}"
