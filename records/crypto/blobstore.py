"""Where ciphertext blobs live: a small storage protocol and a filesystem implementation.

Stores only ever see ciphertext and random blob ids; they know nothing of patients or keys.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from records.errors import NotFoundOrDenied

__all__ = ["BlobStore", "BlobWriter", "FileSystemBlobStore", "new_blob_id"]

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")
_TEMP_PREFIX = ".tmp-"


def new_blob_id() -> str:
    """Return a random 128-bit blob id (32 lowercase hex characters)."""
    return secrets.token_hex(16)


class BlobWriter(Protocol):
    """An in-progress blob: nothing is visible under ``blob_id`` until ``commit``."""

    @property
    def blob_id(self) -> str: ...

    def write(self, data: bytes, /) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Ciphertext blob storage: stream in, stream out, delete."""

    def create(self) -> BlobWriter:
        """Start a new blob under a fresh random id."""
        ...

    def put(self, chunks: Iterable[bytes]) -> str:
        """Store ``chunks`` as one blob atomically and return its id."""
        ...

    def open(self, blob_id: str) -> BinaryIO:
        """Open a blob for reading; unknown ids raise NotFoundOrDenied."""
        ...

    def delete(self, blob_id: str) -> None:
        """Remove a blob; deleting a missing blob is not an error."""
        ...


class _FileBlobWriter:
    """Writes to a temp file beside the target, then fsyncs and renames it into place."""

    def __init__(self, final: Path, blob_id: str) -> None:
        self._blob_id = blob_id
        self._final = final
        self._temp = final.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        self._file: BinaryIO | None = os.fdopen(os.open(self._temp, flags, 0o600), "wb")

    @property
    def blob_id(self) -> str:
        return self._blob_id

    def write(self, data: bytes, /) -> None:
        if self._file is None:
            raise RuntimeError("Cannot write to a blob that is already committed or aborted")
        self._file.write(data)

    def commit(self) -> None:
        if self._file is None:
            raise RuntimeError("Cannot commit a blob that is already committed or aborted")
        handle, self._file = self._file, None
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self._temp, self._final)
            _fsync_dir(self._final.parent)
        except BaseException:
            handle.close()
            self._temp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        if self._file is None:
            return
        handle, self._file = self._file, None
        handle.close()
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class FileSystemBlobStore:
    """Blobs as files ``<root>/<id[:2]>/<id>`` (mode 600, directories 700)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def create(self) -> _FileBlobWriter:
        """Start a new blob under a fresh random id."""
        blob_id = new_blob_id()
        final = self._path(blob_id)
        final.parent.mkdir(mode=0o700, exist_ok=True)
        return _FileBlobWriter(final, blob_id)

    def put(self, chunks: Iterable[bytes]) -> str:
        """Store ``chunks`` as one blob atomically and return its id."""
        with self.create() as writer:
            for chunk in chunks:
                if chunk:
                    writer.write(chunk)
        return writer.blob_id

    def open(self, blob_id: str) -> BinaryIO:
        """Open a blob for reading; unknown or malformed ids raise NotFoundOrDenied."""
        if not _BLOB_ID.match(blob_id):
            raise NotFoundOrDenied()
        try:
            return self._path(blob_id).open("rb")
        except FileNotFoundError:
            raise NotFoundOrDenied() from None

    def delete(self, blob_id: str) -> None:
        """Remove a blob; deleting a missing blob is not an error."""
        if not _BLOB_ID.match(blob_id):
            raise NotFoundOrDenied()
        self._path(blob_id).unlink(missing_ok=True)

    def _path(self, blob_id: str) -> Path:
        return self._root / blob_id[:2] / blob_id

    def __repr__(self) -> str:
        return f"FileSystemBlobStore({str(self._root)!r})"


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; not supported on every platform, so best effort there.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
