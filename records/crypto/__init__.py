"""Envelope encryption at rest for patient files.

Per-file random data keys encrypt files in authenticated chunks (AES-256-GCM); data keys
are wrapped by a versioned key-encryption-key ring. See ``docs/encryption.md``.
"""

from records.crypto.blobstore import BlobStore, BlobWriter, FileSystemBlobStore, new_blob_id
from records.crypto.context import FileContext
from records.crypto.envelope import (
    FileSealer,
    PlaintextStream,
    SealedFile,
    aseal,
    aunseal,
    seal,
    unseal,
    unseal_to,
)
from records.crypto.keyring import (
    DATA_KEY_SIZE,
    KEK_SIZE,
    KekRing,
    WrappedKey,
    create_kek_file,
    generate_data_key,
    rewrap,
)
from records.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    DecryptResult,
    EncryptResult,
    StreamDecryptor,
    StreamEncryptor,
    decrypt_stream,
    encrypt_stream,
    iter_decrypt,
)

__all__ = [
    "DATA_KEY_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "KEK_SIZE",
    "BlobStore",
    "BlobWriter",
    "DecryptResult",
    "EncryptResult",
    "FileContext",
    "FileSealer",
    "FileSystemBlobStore",
    "KekRing",
    "PlaintextStream",
    "SealedFile",
    "StreamDecryptor",
    "StreamEncryptor",
    "WrappedKey",
    "aseal",
    "aunseal",
    "create_kek_file",
    "decrypt_stream",
    "encrypt_stream",
    "generate_data_key",
    "iter_decrypt",
    "new_blob_id",
    "rewrap",
    "seal",
    "unseal",
    "unseal_to",
]
