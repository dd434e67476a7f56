"""The file-reader seam: collectors read /proc, /sys and /etc through a :class:`FileReader`.

Reads raise :class:`OSError` (``FileNotFoundError``, ``PermissionError``…) exactly as the
real filesystem does; collectors turn those into ``unknown`` facts or, where absence is
itself the answer (no ``/sys/firmware/efi`` means a legacy BIOS boot), into a verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from device_policy.collectors.text import clean_text

MAX_FILE_BYTES = 1024 * 1024


class FileReader(Protocol):
    """Read-only access to the files a collector inspects, by absolute path."""

    def read_bytes(self, path: str) -> bytes:
        """The file's content; raises ``OSError`` like the filesystem does."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """Names of the entries in a directory; raises ``OSError`` like the filesystem does."""
        ...

    def exists(self, path: str) -> bool:
        """Whether the path exists (a file or a directory)."""
        ...


def read_text(files: FileReader, path: str) -> str:
    """Read a text file through ``files`` and clean it like command output."""
    return clean_text(files.read_bytes(path))


class LocalFiles:
    """Reads this machine's files, optionally below another root (a mounted image, a test tree)."""

    def __init__(self, root: str | Path = "/") -> None:
        self._root = Path(root)

    def _path(self, path: str) -> Path:
        return self._root / path.lstrip("/")

    def read_bytes(self, path: str) -> bytes:
        """Read at most 1 MiB: /proc and /sys files report size 0, so read, don't stat."""
        with self._path(path).open("rb") as handle:
            return handle.read(MAX_FILE_BYTES)

    def list_dir(self, path: str) -> list[str]:
        """Sorted entry names of a directory."""
        return sorted(entry.name for entry in self._path(path).iterdir())

    def exists(self, path: str) -> bool:
        """Whether the path exists below the root."""
        return self._path(path).exists()
