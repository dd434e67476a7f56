"""What a stored file's ciphertext is bound to: file id, patient id and version."""

from __future__ import annotations

from dataclasses import dataclass

from records.crypto._encoding import U32_MAX, fields, u32

__all__ = ["FileContext"]

_KEY_DOMAIN = b"telemed.records.file-key.v1"
_CHUNK_DOMAIN = b"telemed.records.chunk.v1"


@dataclass(frozen=True, repr=False)
class FileContext:
    """Binding for one stored file version; used as AES-GCM associated data.

    A ciphertext or wrapped key moved to another file, patient or version fails to decrypt.
    """

    file_id: str
    patient_id: str
    version: int

    def __post_init__(self) -> None:
        if not self.file_id or not self.patient_id:
            raise ValueError("file_id and patient_id must not be empty")
        if not 0 <= self.version <= U32_MAX:
            raise ValueError("version must fit in 32 bits")

    def key_aad(self) -> bytes:
        """Associated data for wrapping this file's data key."""
        return fields(_KEY_DOMAIN, *self._parts())

    def chunk_aad_prefix(self) -> bytes:
        """Associated data common to all chunks (the stream appends header, index, flag)."""
        return fields(_CHUNK_DOMAIN, *self._parts())

    def _parts(self) -> tuple[bytes, bytes, bytes]:
        return self.file_id.encode("utf-8"), self.patient_id.encode("utf-8"), u32(self.version)

    def __repr__(self) -> str:
        # patient_id is personal data: keep it out of logs and tracebacks.
        return f"FileContext(file_id={self.file_id!r}, version={self.version}, patient_id=<hidden>)"
