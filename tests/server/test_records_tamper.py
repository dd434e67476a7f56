"""Tampering with the audit trail — in the export file or in the database itself — is caught offline
by ``telemed audit verify``, which names the first bad entry. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from server.audit import record_event
from server.services import Services
from server.settings import Settings
from tests.server.records_fixtures import telemed

ENTRIES = 30


@pytest.fixture
def trail(client: TestClient, services: Services, tmp_path: Path) -> Iterator[Path]:
    """A running server's log of ENTRIES events with checkpoints at 10 and 20; returns the public key file."""
    assert services.records is not None
    for n in range(1, ENTRIES + 1):
        with Session(services.engine) as session:
            record_event(
                session=session,
                action="document.read",
                outcome="allowed" if n % 3 else "denied",
                actor_id=f"user-{n % 4}",
                actor_role="clinician",
                patient_id="patient-x" if n % 2 else "patient-y",
                authority_jti=f"grant-{n // 5}",
                purpose_of_use="TREAT",
                detail={"n": n},
            )
            session.commit()
        if n in (10, 20):
            services.records.checkpoint()
    key = tmp_path / "audit.pub"
    code, out = telemed(services.settings, "audit", "public-key", "--output", str(key))
    assert code == 0, out
    yield key


def _export(settings: Settings, tmp_path: Path, *extra: str) -> Path:
    target = tmp_path / f"export-{len(list(tmp_path.glob('export-*')))}.jsonl"
    code, out = telemed(settings, "audit", "export", "--output", str(target), *extra)
    assert code == 0, out
    return target


def _verify(settings: Settings, export: Path, key: Path) -> tuple[int, str]:
    return telemed(settings, "audit", "verify", str(export), "--public-key", str(key))


def _rewrite(source: Path, change: Callable[[list[dict[str, object]]], list[dict[str, object]]]) -> Path:
    lines = [json.loads(line) for line in source.read_text().splitlines()]
    target = source.with_name(source.stem + "-tampered.jsonl")
    target.write_text("".join(json.dumps(v, separators=(",", ":")) + "\n" for v in change(lines)))
    return target


def _entry(lines: list[dict[str, object]], seq: int) -> dict[str, object]:
    return next(v for v in lines if v.get("type") == "entry" and v["seq"] == seq)


def _edit(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    _entry(lines, 12)["actor_id"] = "someone-else"
    return lines


def _delete(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [v for v in lines if v.get("seq") != 15]


def _reorder(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    a, b = lines.index(_entry(lines, 5)), lines.index(_entry(lines, 6))
    lines[a], lines[b] = lines[b], lines[a]
    return lines


def _truncate(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [v for v in lines if not (v.get("type") == "entry" and int(str(v["seq"])) > 25)]


def _forge_checkpoint(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    checkpoint = next(v for v in lines if v.get("type") == "checkpoint" and v["tree_size"] == 20)
    checkpoint["root_hash"] = "0" * 64
    return lines


@pytest.mark.parametrize(
    ("tamper", "problem", "seq"),
    [
        (_edit, "edited", 12),
        (_delete, "deleted", 15),
        (_reorder, "reordered", 5),
        (_truncate, "truncated", 26),
        (_forge_checkpoint, "forged_checkpoint", None),
    ],
)
def test_a_tampered_export_fails_and_names_the_first_bad_entry(
    services: Services,
    trail: Path,
    tmp_path: Path,
    tamper: Callable[[list[dict[str, object]]], list[dict[str, object]]],
    problem: str,
    seq: int | None,
) -> None:
    export = _export(services.settings, tmp_path)
    code, out = _verify(services.settings, export, trail)
    assert code == 0 and "OK" in out and "every entry is covered by a signed checkpoint" in out, out
    code, out = _verify(services.settings, _rewrite(export, tamper), trail)
    assert code == 1, out
    assert f"FAILED ({problem}" in out
    if seq is not None:
        assert f"at seq {seq})" in out


def test_a_key_other_than_the_pinned_one_verifies_nothing(
    services: Services, trail: Path, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from records.audit.signing import public_key_pem

    other = tmp_path / "other.pub"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate()))
    code, out = _verify(services.settings, _export(services.settings, tmp_path), other)
    assert code == 1 and "FAILED (unknown_key): Checkpoint at tree size 10 names audit key ed25519:" in out


def test_a_patient_export_shows_only_that_patient_and_still_verifies(
    services: Services, trail: Path, tmp_path: Path
) -> None:
    export = _export(services.settings, tmp_path, "--patient", "patient-x")
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    shown = [v for v in lines if v["type"] == "entry"]
    assert {v["patient_id"] for v in shown} == {"patient-x"}
    assert "patient-y" not in export.read_text()
    assert {v["type"] for v in lines} == {"checkpoint", "entry", "redacted"}
    code, out = _verify(services.settings, export, trail)
    assert code == 0 and "redacted" in out, out
    code, out = _verify(services.settings, _rewrite(export, _edit_first_shown), trail)
    assert code == 1 and "FAILED (edited at seq 1)" in out, out
    code, out = _verify(services.settings, _rewrite(export, _drop_redacted), trail)
    assert code == 1 and "FAILED (deleted at seq 2)" in out, out


def _edit_first_shown(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    _entry(lines, 1)["outcome"] = "denied"
    return lines


def _drop_redacted(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [v for v in lines if not (v["type"] == "redacted" and v["seq"] == 2)]


class _Superuser:
    """Someone with full control of the database: triggers are no obstacle to them."""

    def __init__(self, services: Services) -> None:
        self.url = str(services.settings.database_url)
        self.engine = services.engine

    def run(self, statement: str, params: dict[str, object] | None = None) -> None:
        """Run ``statement`` (``:name`` parameters) with the append-only trigger out of the way."""
        if self.url.startswith("postgresql"):
            with psycopg.connect(self.url, autocommit=False) as conn:
                conn.execute("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only")
                conn.execute(re.sub(r":(\w+)", r"%(\1)s", statement), params or {})  # type: ignore[call-overload]
                conn.execute("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only")
            return
        with self.engine.begin() as conn:
            for op in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER audit_entries_no_{op}"))
            conn.execute(text(statement), params or {})
            for op in ("UPDATE", "DELETE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER audit_entries_no_{op.lower()} BEFORE {op} ON audit_entries "
                        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
                    )
                )


@pytest.mark.parametrize(
    ("statement", "problem", "seq"),
    [
        ("UPDATE audit_entries SET outcome = 'allowed' WHERE seq = 12", "edited", 12),
        ("DELETE FROM audit_entries WHERE seq = 15", "deleted", 15),
        # Cutting the tail: the export's own entry then follows the cut, so it reads as a gap.
        ("DELETE FROM audit_entries WHERE seq > 27", "deleted", 28),
        # Renumbering rows out of the way is a deletion too.
        ("UPDATE audit_entries SET seq = seq + 1000 WHERE seq IN (5, 6)", "deleted", 5),
    ],
)
def test_tampering_in_the_database_is_caught_by_the_offline_verifier(
    services: Services, trail: Path, tmp_path: Path, statement: str, problem: str, seq: int
) -> None:
    with services.engine.begin() as conn:
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text(statement))
    _Superuser(services).run(statement)
    code, out = _verify(services.settings, _export(services.settings, tmp_path), trail)
    assert code == 1, out
    assert f"FAILED ({problem} at seq {seq})" in out, out


def test_a_rehashed_rewrite_in_the_database_is_caught_by_the_checkpoints(
    services: Services, trail: Path, tmp_path: Path
) -> None:
    from records.audit.chain import AuditEntry, chain_entry

    export = _export(services.settings, tmp_path)
    entries = [AuditEntry.model_validate({k: v for k, v in json.loads(line).items() if k != "type"})
               for line in export.read_text().splitlines() if '"type":"entry"' in line]  # fmt: skip
    # Rewrite entry 12 and re-link every later entry so the hash chain itself is consistent again.
    prev = entries[10].entry_hash
    superuser = _Superuser(services)
    for entry in entries[11:]:
        values = entry.model_dump()
        if entry.seq == 12:
            values["outcome"] = "allowed"
        relinked = chain_entry(prev, values)
        prev = relinked.entry_hash
        superuser.run(
            "UPDATE audit_entries SET outcome = :outcome, prev_hash = :prev, entry_hash = :hash "
            "WHERE seq = :seq",
            {
                "outcome": relinked.outcome,
                "prev": relinked.prev_hash,
                "hash": relinked.entry_hash,
                "seq": relinked.seq,
            },
        )
    code, out = _verify(services.settings, _export(services.settings, tmp_path), trail)
    assert code == 1, out
    assert "FAILED (forged_checkpoint at seq 11)" in out, out
