"""Errors of the records services that the core error tree (``records.errors``) lacks.

Same shape as ``records.errors`` (``code``, ``status``, ``title``), under its base class::

    RecordsError
    ├── AdminRequired          403 access_denied         -- sign in as an admin
    ├── VersionConflict        409 version_conflict      -- reload the note, then edit
    ├── ReviewClosed           409 review_closed         -- the break-glass review is done
    ├── AlreadyRegistered      409 already_exists        -- the patient is already registered
    ├── DocumentTooLarge       413 document_too_large    -- split or compress the file
    ├── InvalidDocument        422 invalid_document      -- fix the metadata
    ├── InvalidCursor          422 invalid_cursor        -- restart paging without a cursor
    └── RecordsNotReady        503 records_not_ready     -- keys not loaded yet
"""

from __future__ import annotations

from records.errors import RecordsError

__all__ = [
    "AdminRequired",
    "AlreadyRegistered",
    "DocumentTooLarge",
    "InvalidCursor",
    "InvalidDocument",
    "RecordsNotReady",
    "ReviewClosed",
    "VersionConflict",
]


class AdminRequired(RecordsError):
    """Only admins may do this (import, register, read the audit trail)."""

    code = "access_denied"
    status = 403
    title = "Access denied"


class VersionConflict(RecordsError):
    """A note changed since the version the edit was based on."""

    code = "version_conflict"
    status = 409
    title = "The note has a newer version"


class ReviewClosed(RecordsError):
    """A break-glass access was already reviewed; the message names its status."""

    code = "review_closed"
    status = 409
    title = "The break-glass access has already been reviewed"


class AlreadyRegistered(RecordsError):
    """A patient with this prison number is already registered."""

    code = "already_exists"
    status = 409
    title = "Already exists"


class DocumentTooLarge(RecordsError):
    """The uploaded file is larger than the configured maximum."""

    code = "document_too_large"
    status = 413
    title = "The document is too large"


class InvalidDocument(RecordsError):
    """The document's metadata is not acceptable."""

    code = "invalid_document"
    status = 422
    title = "The document metadata is not valid"


class InvalidCursor(RecordsError):
    """A paging cursor that this server did not hand out."""

    code = "invalid_cursor"
    status = 422
    title = "The paging cursor is not valid"


class RecordsNotReady(RecordsError):
    """The records keys are not loaded (the server has not finished starting)."""

    code = "records_not_ready"
    status = 503
    title = "Records are not available yet"
