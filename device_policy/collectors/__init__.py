"""Posture collectors: what the laptop agent observes about its own device.

Each collector runs a real tool (or reads a real file) through a seam, parses what it
printed, and reports :class:`~device_policy.facts.Fact` values with its own verdict —
``pass``, ``fail``, or ``unknown`` with the reason (tool missing, not allowed, output not
understood). ``unknown`` never passes. Fact names are in :mod:`.names`; the commands and
the meaning of each fact are in ``docs/collectors.md``.

Collect on a device::

    facts = await collect("linux", SubprocessRunner(), LocalFiles())

Parse a saved output (``telemed-device parse KIND FILE``)::

    parse("mmcli-modem", saved_bytes)  # {"unlock_required": "none", "enabled_locks": ["sim"], …}
"""

from __future__ import annotations

from device_policy.collectors.collect import collect, platform_name
from device_policy.collectors.errors import CollectorError, UnknownCollector, UnparsableOutput
from device_policy.collectors.fakes import FakeFiles, FakeRunner
from device_policy.collectors.files import FileReader, LocalFiles
from device_policy.collectors.linux import collect_linux
from device_policy.collectors.names import FACT_NAMES, FACT_TYPES
from device_policy.collectors.registry import describe_kinds, list_kinds, parse
from device_policy.collectors.runner import (
    CommandResult,
    CommandRunner,
    RunFailure,
    SubprocessRunner,
)
from device_policy.collectors.text import decode_output
from device_policy.collectors.windows import collect_windows

__all__ = [
    "FACT_NAMES",
    "FACT_TYPES",
    "CollectorError",
    "CommandResult",
    "CommandRunner",
    "FakeFiles",
    "FakeRunner",
    "FileReader",
    "LocalFiles",
    "RunFailure",
    "SubprocessRunner",
    "UnknownCollector",
    "UnparsableOutput",
    "collect",
    "collect_linux",
    "collect_windows",
    "decode_output",
    "describe_kinds",
    "list_kinds",
    "parse",
    "platform_name",
]
