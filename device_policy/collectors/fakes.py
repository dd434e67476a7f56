"""Fakes for the two seams, behaving like the real thing: a missing command is "not found",
a missing file raises ``FileNotFoundError``, a planted ``OSError`` is raised on read.

Used by the tests, and usable by anyone who wants to replay outputs saved on a device.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

from device_policy.collectors.runner import CommandResult
from device_policy.collectors.text import decode_output

FakeOutput = CommandResult | str | bytes


class FakeRunner:
    """Answers each argv from a table of saved outputs; anything else is "command not found"."""

    def __init__(self, outputs: Mapping[tuple[str, ...], FakeOutput] | None = None) -> None:
        self._outputs: dict[tuple[str, ...], CommandResult] = {}
        self.calls: list[tuple[str, ...]] = []
        for argv, output in (outputs or {}).items():
            self.add(argv, output)

    def add(self, argv: Sequence[str], output: FakeOutput) -> None:
        """Answer ``argv`` with ``output`` (text or bytes mean: printed on stdout, exit 0)."""
        if isinstance(output, bytes):
            output = CommandResult(0, decode_output(output), "")
        elif isinstance(output, str):
            output = CommandResult(0, output, "")
        self._outputs[tuple(argv)] = output

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """The saved result for ``argv``, or "command not found"."""
        key = tuple(argv)
        self.calls.append(key)
        if key in self._outputs:
            return self._outputs[key]
        return CommandResult.not_found(key[0] if key else "")


class FakeFiles:
    """An in-memory filesystem: paths map to content, or to the ``OSError`` reading raises."""

    def __init__(self, files: Mapping[str, str | bytes | OSError] | None = None) -> None:
        self._files: dict[str, bytes | OSError] = {}
        self._dirs: set[str] = {"/"}
        for path, content in (files or {}).items():
            self.add(path, content)

    def add(self, path: str, content: str | bytes | OSError) -> None:
        """Plant a file (and its parent directories)."""
        path = posixpath.normpath(path)
        self._files[path] = content.encode("utf-8") if isinstance(content, str) else content
        self.add_dir(posixpath.dirname(path))

    def add_dir(self, path: str) -> None:
        """Plant a directory (and its parents)."""
        path = posixpath.normpath(path)
        while path not in self._dirs:
            self._dirs.add(path)
            path = posixpath.dirname(path)

    def read_bytes(self, path: str) -> bytes:
        """Content of a planted file; raises like the real filesystem."""
        path = posixpath.normpath(path)
        content = self._files.get(path)
        if content is None:
            if path in self._dirs:
                raise IsADirectoryError(21, "Is a directory", path)
            raise FileNotFoundError(2, "No such file or directory", path)
        if isinstance(content, OSError):
            raise content
        return content

    def list_dir(self, path: str) -> list[str]:
        """Sorted names directly below a planted directory."""
        path = posixpath.normpath(path)
        if path not in self._dirs:
            raise FileNotFoundError(2, "No such file or directory", path)
        names = {
            posixpath.basename(p)
            for p in (*self._files, *self._dirs)
            if p != path and posixpath.dirname(p) == path
        }
        return sorted(names)

    def exists(self, path: str) -> bool:
        """Whether a file or directory was planted at ``path``."""
        path = posixpath.normpath(path)
        return path in self._files or path in self._dirs
