"""The records keys and the audit checkpointer, held once per server process.

Keys (fail closed):

* the KEK directory and the audit key file come from ``TELEMED_RECORDS_KEK_DIR`` and
  ``TELEMED_AUDIT_KEY_FILE``; only in development do they default to ``data_dir/keys``;
* a missing key is generated (mode 600) only when nothing in the database depends on it:
  no encrypted document or note for the KEK, no signed checkpoint for the audit key.
  Otherwise the server refuses to start rather than encrypt or sign under keys that
  do not match what is stored.

The checkpointer signs the head of the audit log every ``audit_checkpoint_interval``
when new entries arrived, and once more at shutdown, with the audit key as the key file holds
it then: after ``telemed audit rotate-key`` (another process) the next checkpoint is signed
with the new key, no restart (``records.audit.keyring.AuditKeyRing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from records.audit.checkpoint import Checkpoint
from records.audit.log import create_checkpoint
from records.crypto import FileSystemBlobStore
from records.errors import KeyConfigError
from records.models import AuditCheckpointRow, Document, NoteVersion
from records.service_errors import RecordsNotReady
from records.vault import Vault, load_audit_key_ring, load_kek_ring
from server.db import session_scope
from server.settings import Settings

log = logging.getLogger("telemed.records")


def key_paths(settings: Settings) -> tuple[Path, Path]:
    """Where the KEKs and the audit key live; outside development they must be configured."""
    kek_dir, audit_key = settings.records_kek_dir, settings.audit_key_file
    if settings.is_development:
        kek_dir = kek_dir or settings.data_dir / "keys" / "records"
        audit_key = audit_key or settings.data_dir / "keys" / "audit-ed25519.pem"
    if kek_dir is None or audit_key is None:
        raise KeyConfigError(
            "TELEMED_RECORDS_KEK_DIR and TELEMED_AUDIT_KEY_FILE must be set outside development "
            f"(environment is {settings.environment.value!r})"
        )
    return kek_dir, audit_key


def blob_dir(settings: Settings) -> Path:
    """Where the ciphertext blobs live."""
    return settings.data_dir / "blobs"


def _exists(session: Session, column: object) -> bool:
    return session.exec(select(column).limit(1)).first() is not None  # type: ignore[call-overload]


def load_vault(settings: Settings, engine: Engine) -> Vault:
    """Load the keys, creating them only where no stored data depends on them."""
    kek_dir, audit_key = key_paths(settings)
    with Session(engine) as session:
        encrypted = _exists(session, Document.id) or _exists(session, NoteVersion.id)
        signed = _exists(session, AuditCheckpointRow.tree_size)
    ring = load_kek_ring(kek_dir, create=not encrypted)
    keys = load_audit_key_ring(audit_key, create=not signed)
    return Vault(ring=ring, store=FileSystemBlobStore(blob_dir(settings)), audit_keys=keys)


class RecordsRuntime:
    """Holds the vault once loaded and runs the audit checkpointer."""

    def __init__(self, *, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine
        self._vault: Vault | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def vault(self) -> Vault:
        """The loaded keys and blob store; refuses until ``start`` (or ``load``) ran."""
        if self._vault is None:
            raise RecordsNotReady("The records keys are not loaded yet")
        return self._vault

    def load(self) -> Vault:
        """Load (or, where allowed, create) the keys now."""
        if self._vault is None:
            self._vault = load_vault(self._settings, self._engine)
        return self._vault

    def checkpoint(self) -> Checkpoint | None:
        """Sign the audit log's head now if it has new entries."""
        with session_scope(self._engine) as session:
            return create_checkpoint(session=session, private_key=self.vault.audit_key)

    async def start(self) -> None:
        """Load the keys (fail closed) and start the periodic checkpointer."""
        await asyncio.to_thread(self.load)
        if self._task is None:
            self._task = asyncio.create_task(self._checkpoint_forever(), name="audit-checkpointer")

    async def stop(self) -> None:
        """Stop the checkpointer and sign whatever arrived since the last checkpoint."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._vault is not None:
            try:
                await asyncio.to_thread(self.checkpoint)
            except Exception:
                log.exception("could not sign the final audit checkpoint")

    async def _checkpoint_forever(self) -> None:
        interval = self._settings.audit_checkpoint_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                made = await asyncio.to_thread(self.checkpoint)
            except Exception:
                # Keep trying: a missed checkpoint leaves entries unanchored, not unrecorded.
                log.exception("could not sign an audit checkpoint")
                continue
            if made is not None:
                log.debug("audit checkpoint", extra={"tree_size": made.tree_size})
