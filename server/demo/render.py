"""The demo's timeline on a terminal (rich), one line per step as it finishes, with a spinner
while a step waits; or the whole timeline as JSON for machines."""

from __future__ import annotations

import json

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.status import Status
from rich.table import Table
from rich.text import Text

from server.demo.steps import StepResult

_MARKS = {"passed": ("✓", "bold green"), "failed": ("✗", "bold red"), "skipped": ("·", "dim")}
NAME_WIDTH = 42
# Below this many columns the summary goes under the step rather than beside it.
WIDE = 120


def step_line(result: StepResult, *, width: int) -> RenderableType:
    """One timeline entry: mark, step, seconds, and what it showed — beside them when the
    terminal is wide enough, else on the next line, indented."""
    mark, style = _MARKS[result.outcome]
    seconds = "" if result.outcome == "skipped" else f"{result.seconds:.1f} s"
    summary_style = {"failed": "red", "skipped": "dim"}.get(result.outcome, "")
    name = Text(result.name, style="dim" if result.outcome == "skipped" else "")
    summary = Text(result.summary, style=summary_style)
    row = Table.grid(padding=(0, 1))
    row.add_column(width=1)
    row.add_column(width=NAME_WIDTH, no_wrap=True, overflow="ellipsis")
    row.add_column(width=7, justify="right")
    if width >= WIDE:
        row.add_column(ratio=1, overflow="fold")
        row.add_row(Text(mark, style=style), name, Text(seconds, style="cyan"), summary)
        return row
    row.add_row(Text(mark, style=style), name, Text(seconds, style="cyan"))
    return Group(row, Padding(summary, (0, 0, 0, 2)))


class TimelineRenderer:
    """Shows the story as it runs: a spinner on the current step, a line for each finished one."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None
        self._name = ""

    def started(self, name: str) -> None:
        """Spin while the step runs."""
        self._name = name
        self._status = self.console.status(Text(f"{name}…"), spinner="dots")
        self._status.start()

    def progress(self, text: str) -> None:
        """Say what the running step is waiting for."""
        if self._status is not None:
            self._status.update(Text(f"{self._name} — {text}"))

    def finished(self, result: StepResult) -> None:
        """Replace the spinner with the step's line."""
        if self._status is not None:
            self._status.stop()
            self._status = None
        self.console.print(step_line(result, width=self.console.width))

    def close(self) -> None:
        """Stop a spinner left running (interrupted)."""
        if self._status is not None:
            self._status.stop()
            self._status = None


def render_json(document: dict[str, object]) -> str:
    """The timeline for machines."""
    return json.dumps(document, indent=2, ensure_ascii=False)
