"""The audit witness: an independent co-signer of checkpoints that refuses forks and rollbacks.

The witness runs apart from the server (another host, another operator), with its own
Ed25519 key and its own append-only store. Each round it takes the server's newest signed
checkpoint, checks the audit key's signature, checks with an RFC 9162 consistency proof that
the checkpoint's tree extends the last one it co-signed, and only then co-signs it and
appends the cosignature to its store. A smaller tree, or the same size with another root, or
a proof that does not verify, is refused and nothing is co-signed.

Store (a directory, mode 700)::

    witness-ed25519.pem     the witness private key (PKCS#8 PEM, mode 600)
    witness-public.pem      its public key (give it to ``telemed audit verify --witness-key``)
    audit-public.pem        the pinned audit checkpoint public key(s)
    cosignatures.jsonl      one canonical JSON cosignature per line, only ever appended

The cosignature is an Ed25519 signature by the witness key over the canonical JSON of
every cosignature field except ``signature``, plus ``"statement":"telemed-audit-cosignature/v1"``
(so it can never be mistaken for anything else the key might sign). See ``docs/audit.md``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from records.audit.chain import HASH_PATTERN, canonical_json, check_ts, utc_now_ts
from records.audit.checkpoint import (
    Checkpoint,
    PublicKeys,
    audit_key_id,
    public_key_map,
    verify_checkpoint_signature,
)
from records.audit.merkle import MerkleAccumulator, verify_consistency
from records.audit.signing import create_audit_key, load_audit_key, load_public_keys, public_key_pem
from records.audit.verify import VerifyReport, parse_line
from records.errors import KeyConfigError, RecordsError

__all__ = [
    "COSIGNATURE_STATEMENT",
    "Cosignature",
    "WitnessRefused",
    "WitnessResult",
    "WitnessStore",
    "check_witnessed",
    "cosign",
    "read_cosignatures",
    "verify_cosignature",
    "witness_round",
]

COSIGNATURE_STATEMENT = "telemed-audit-cosignature/v1"
KEY_FILE = "witness-ed25519.pem"
PUBLIC_FILE = "witness-public.pem"
AUDIT_PUBLIC_FILE = "audit-public.pem"
STORE_FILE = "cosignatures.jsonl"


class WitnessRefused(RecordsError):
    """The witness will not co-sign: the log was rolled back or forked, or the checkpoint is not genuine."""

    code = "witness_refused"
    status = 409
    title = "The witness refused the checkpoint"


class Cosignature(BaseModel):
    """The witness's statement: it saw this tree head, consistent with every one it saw before."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    tree_size: int = Field(ge=1)
    root_hash: str = Field(pattern=HASH_PATTERN)
    last_entry_hash: str = Field(pattern=HASH_PATTERN)
    checkpoint_key_id: str = Field(min_length=1, max_length=100)
    checkpoint_ts: str
    ts: str
    witness_key_id: str = Field(min_length=1, max_length=100)
    signature: str

    @field_validator("ts", "checkpoint_ts")
    @classmethod
    def _ts(cls, value: str) -> str:
        return check_ts(value)

    @field_validator("signature")
    @classmethod
    def _signature(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("signature must be base64") from None
        if len(raw) != 64:
            raise ValueError("an Ed25519 signature is 64 bytes")
        return value

    def signed_message(self) -> bytes:
        """The exact bytes the witness signs."""
        values = self.model_dump(mode="json", exclude={"signature"})
        return canonical_json({**values, "statement": COSIGNATURE_STATEMENT})


def cosign(checkpoint: Checkpoint, private_key: Ed25519PrivateKey, *, ts: str | None = None) -> Cosignature:
    """Co-sign ``checkpoint``'s tree head with the witness key."""
    placeholder = base64.b64encode(bytes(64)).decode("ascii")
    draft = Cosignature(
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash,
        last_entry_hash=checkpoint.last_entry_hash,
        checkpoint_key_id=checkpoint.key_id,
        checkpoint_ts=checkpoint.ts,
        ts=ts or utc_now_ts(),
        witness_key_id=audit_key_id(private_key.public_key()),
        signature=placeholder,
    )
    signature = base64.b64encode(private_key.sign(draft.signed_message())).decode("ascii")
    return draft.model_copy(update={"signature": signature})


def verify_cosignature(cosignature: Cosignature, witness_keys: PublicKeys) -> bool:
    """True when the witness key that ``witness_key_id`` names signed ``cosignature``."""
    key = public_key_map(witness_keys).get(cosignature.witness_key_id)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(cosignature.signature), cosignature.signed_message())
    except InvalidSignature:
        return False
    return True


def read_cosignatures(stream: TextIO) -> list[Cosignature]:
    """Parse a cosignature file (canonical JSON lines); raises ``ValueError`` naming a bad line."""
    found: list[Cosignature] = []
    for number, line in enumerate(stream, start=1):
        parsed = parse_line(line, number)
        if parsed is None:
            continue
        try:
            if parsed.get("type") == "malformed":
                raise ValueError(parsed.get("reason"))
            cosignature = Cosignature.model_validate(parsed)
        except (ValidationError, ValueError):
            raise ValueError(f"Line {number} of the cosignature file is not a cosignature") from None
        if canonical_json(dict(parsed)) != canonical_json(cosignature.model_dump(mode="json")):
            raise ValueError(f"Line {number} of the cosignature file is not exactly a cosignature")
        found.append(cosignature)
    return found


# --- The witness's store ---------------------------------------------------------------------


class WitnessStore:
    """The witness's directory: its key, the pinned audit key, and its append-only cosignatures."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @property
    def cosignatures_file(self) -> Path:
        """Where the cosignatures are appended."""
        return self.directory / STORE_FILE

    @property
    def public_key_file(self) -> Path:
        """The witness public key (PEM), for verifiers."""
        return self.directory / PUBLIC_FILE

    def init(self, audit_public_pem: bytes) -> Ed25519PublicKey:
        """Create the witness key and pin the audit public key(s); refuses an existing store."""
        audit_keys = load_public_keys(audit_public_pem)
        if (self.directory / KEY_FILE).exists():
            raise KeyConfigError(f"A witness key already exists in {self.directory}")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = create_audit_key(self.directory / KEY_FILE)
        self.public_key_file.write_text(public_key_pem(key), encoding="ascii")
        pinned = "".join(public_key_pem(k) for k in audit_keys)
        (self.directory / AUDIT_PUBLIC_FILE).write_text(pinned, encoding="ascii")
        fd = os.open(self.cosignatures_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        return key.public_key()

    def private_key(self) -> Ed25519PrivateKey:
        """The witness key (refused if missing or readable by others)."""
        return load_audit_key(self.directory / KEY_FILE)

    def audit_keys(self) -> list[Ed25519PublicKey]:
        """The pinned audit checkpoint public keys."""
        path = self.directory / AUDIT_PUBLIC_FILE
        if not path.is_file():
            raise KeyConfigError(f"No pinned audit public key in {self.directory}: run witness init")
        return load_public_keys(path.read_bytes())

    def cosignatures(self) -> list[Cosignature]:
        """Every cosignature in the store, oldest first."""
        if not self.cosignatures_file.is_file():
            raise KeyConfigError(f"No cosignature store in {self.directory}: run witness init")
        with self.cosignatures_file.open("r", encoding="utf-8", errors="surrogateescape", newline="") as f:
            try:
                return read_cosignatures(f)
            except ValueError as exc:
                raise KeyConfigError(f"The witness store is damaged: {exc}") from None

    def last(self) -> Cosignature | None:
        """The newest cosignature (the largest tree the witness has seen)."""
        found = self.cosignatures()
        return found[-1] if found else None

    def append(self, cosignature: Cosignature) -> None:
        """Append one cosignature and make it durable before the round reports success."""
        line = canonical_json(cosignature.model_dump(mode="json")) + b"\n"
        fd = os.open(self.cosignatures_file, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


# --- One round -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessResult:
    """What a round did: ``cosigned`` a new tree head, or found ``nothing_new``."""

    outcome: Literal["cosigned", "nothing_new"]
    tree_size: int
    cosignature: Cosignature | None = None


ProofSource = Callable[[int, int], Sequence[str]]
"""Fetches the consistency proof from tree size ``first`` to ``second`` (from the server)."""


def witness_round(
    *, store: WitnessStore, checkpoint: Checkpoint | None, proof_source: ProofSource
) -> WitnessResult:
    """Check ``checkpoint`` against the last co-signed tree head and co-sign it, or refuse."""
    last = store.last()
    if checkpoint is None:
        if last is not None:
            raise WitnessRefused(
                f"The server has no checkpoint, but the witness co-signed one over {last.tree_size} entries"
            )
        return WitnessResult("nothing_new", 0)
    if not verify_checkpoint_signature(checkpoint, store.audit_keys()):
        raise WitnessRefused(
            f"The checkpoint at tree size {checkpoint.tree_size} is not signed by the pinned audit key"
        )
    if last is not None:
        if checkpoint.tree_size < last.tree_size:
            raise WitnessRefused(
                f"Rollback: the newest checkpoint covers {checkpoint.tree_size} entries, "
                f"but the witness co-signed one over {last.tree_size}"
            )
        if checkpoint.tree_size == last.tree_size:
            if hmac.compare_digest(checkpoint.root_hash, last.root_hash):
                return WitnessResult("nothing_new", last.tree_size)
            raise WitnessRefused(
                f"Fork: the checkpoint at tree size {checkpoint.tree_size} has another root "
                "than the one the witness co-signed"
            )
        proof = list(proof_source(last.tree_size, checkpoint.tree_size))
        if not verify_consistency(
            first=last.tree_size,
            second=checkpoint.tree_size,
            first_root=last.root_hash,
            second_root=checkpoint.root_hash,
            proof=proof,
        ):
            raise WitnessRefused(
                f"Fork: the log at {checkpoint.tree_size} entries is not an extension of the "
                f"{last.tree_size} entries the witness co-signed (the consistency proof fails)"
            )
    cosignature = cosign(checkpoint, store.private_key())
    store.append(cosignature)
    return WitnessResult("cosigned", checkpoint.tree_size, cosignature)


# --- Offline: an export against the witness's cosignatures -----------------------------------


def check_witnessed(
    lines: Iterable[Mapping[str, Any]],
    cosignatures: Sequence[Cosignature],
    witness_keys: PublicKeys,
    base: VerifyReport,
) -> VerifyReport:
    """Check an export that already verified (``base``) against every witnessed tree head.

    ``lines`` are the export's entry and redacted lines in order (their chain is already
    verified). Fails when a cosignature is not the witness's, when the export ends before a
    witnessed size (truncation, even with the checkpoints deleted), or when the entries do not
    hash to a witnessed root (a rewrite, even one re-signed with the audit key).
    """

    def fail(problem: Any, seq: int | None, message: str) -> VerifyReport:
        return base.model_copy(
            update={"ok": False, "problem": problem, "first_bad_seq": seq, "message": message}
        )

    keys = public_key_map(witness_keys)
    for cosignature in cosignatures:
        if not verify_cosignature(cosignature, keys):
            return fail(
                "forged_cosignature",
                None,
                f"The cosignature at tree size {cosignature.tree_size} is not signed by the witness key",
            )
    pending = sorted(cosignatures, key=lambda c: c.tree_size)
    acc = MerkleAccumulator()
    last_hash = ""
    matched = 0
    index = 0
    for raw in lines:
        if raw.get("type") not in ("entry", "redacted"):
            continue
        acc.append(str(raw["entry_hash"]))
        last_hash = str(raw["entry_hash"])
        while index < len(pending) and pending[index].tree_size == acc.size:
            cosigned = pending[index]
            if not (
                hmac.compare_digest(acc.root(), cosigned.root_hash)
                and hmac.compare_digest(last_hash, cosigned.last_entry_hash)
            ):
                return fail(
                    "witness_mismatch",
                    matched + 1,
                    f"Entries {matched + 1}..{cosigned.tree_size} do not match the tree head the witness "
                    f"co-signed at tree size {cosigned.tree_size}: the log was rewritten",
                )
            matched = cosigned.tree_size
            index += 1
    if index < len(pending):
        size = pending[-1].tree_size
        return fail(
            "truncated",
            acc.size + 1,
            f"The log ends at seq {acc.size} but the witness co-signed a tree head over {size} entries: "
            f"entries after seq {acc.size} were removed",
        )
    witnessed = (
        f"; entries 1..{matched} are witnessed" if matched else "; the witness has co-signed nothing yet"
    )
    return base.model_copy(update={"witnessed_size": matched, "message": base.message + witnessed})
