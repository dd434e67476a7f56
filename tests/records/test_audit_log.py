"""The database audit log: contiguous, append-only, concurrent-safe, checkpointed — on both databases."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from records.audit.chain import GENESIS_HASH
from records.audit.log import (
    AuditLogCorrupt,
    append_entry,
    create_checkpoint,
    head,
    iter_checkpoints,
    iter_entries,
)
from server.db import make_engine
from tests.records.audit_helpers import append_many, checkpoint, event, export_text, verify_text

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = make_engine(db_url)
    yield built
    built.dispose()


def _seqs(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return [e.seq for e in iter_entries(session=session)]


def test_entries_are_numbered_from_one_and_chained(engine: Engine) -> None:
    entries = append_many(engine, 5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))
    with Session(engine) as session:
        stored = list(iter_entries(session=session))
        assert stored == entries
        assert all(e.is_intact() for e in stored)
        assert head(session=session).seq == 5


def test_a_rolled_back_append_leaves_no_gap(engine: Engine) -> None:
    append_many(engine, 2)
    with Session(engine) as session:
        lost = append_entry(session=session, event=event(99))
        assert lost.seq == 3
        session.rollback()
    after = append_many(engine, 1, start=3)
    assert after[0].seq == 3
    assert _seqs(engine) == [1, 2, 3]
    report = verify_text(export_text(engine), KEY)
    assert report.ok, report.message


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_entries SET actor_id = 'x'", "DELETE FROM audit_entries"]
)
def test_the_database_refuses_to_rewrite_entries(engine: Engine, statement: str) -> None:
    append_many(engine, 3)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    assert _seqs(engine) == [1, 2, 3]


def test_the_database_refuses_to_rewrite_checkpoints(engine: Engine) -> None:
    append_many(engine, 3)
    checkpoint(engine, KEY)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_checkpoints SET tree_size = 2"))


def _append_concurrently(engine: Engine, *, threads: int, per_thread: int) -> list[BaseException]:
    """Start ``threads`` writers together, each appending ``per_thread`` entries; return their errors."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(index: int) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                with Session(engine) as session:
                    append_entry(session=session, event=event(index * 1000 + n))
                    session.commit()
        except BaseException as exc:  # surfaced by the caller with its thread's traceback
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def test_concurrent_writers_get_contiguous_numbers_and_one_valid_chain(engine: Engine) -> None:
    threads, per_thread = 8, 50
    assert _append_concurrently(engine, threads=threads, per_thread=per_thread) == []
    assert _seqs(engine) == list(range(1, threads * per_thread + 1))
    checkpoint(engine, KEY)
    report = verify_text(export_text(engine), KEY)
    assert report.ok and report.entries_checked == threads * per_thread, report.message
    assert report.unanchored_entries == 0


def test_checkpoints_sign_the_head_once(engine: Engine) -> None:
    with Session(engine) as session:
        assert create_checkpoint(session=session, private_key=KEY) is None  # empty log
    append_many(engine, 4)
    with Session(engine) as session:
        first = create_checkpoint(session=session, private_key=KEY)
        session.commit()
        again = create_checkpoint(session=session, private_key=KEY)
    assert first is not None and first.tree_size == 4 and again is None
    append_many(engine, 3, start=5)
    checkpoint(engine, KEY)
    with Session(engine) as session:
        assert [c.tree_size for c in iter_checkpoints(session=session)] == [4, 7]
    report = verify_text(export_text(engine), KEY)
    assert report.ok and report.checkpoints_checked == 2 and report.anchored_size == 7


def test_a_head_that_no_entry_backs_is_never_signed(engine: Engine) -> None:
    append_many(engine, 3)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_head SET seq = 4"))
    with Session(engine) as session, pytest.raises(AuditLogCorrupt, match="does not match"):
        create_checkpoint(session=session, private_key=KEY)


def test_a_missing_head_over_existing_entries_is_refused_not_forked(engine: Engine) -> None:
    append_many(engine, 2)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))
    with Session(engine) as session, pytest.raises(AuditLogCorrupt, match="missing while 2 entries"):
        append_entry(session=session, event=event(3))
    with Session(engine) as session:
        assert [e.seq for e in iter_entries(session=session)] == [1, 2]


def test_writers_racing_on_a_wiped_head_recreate_it_once(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))
    threads = 6
    assert _append_concurrently(engine, threads=threads, per_thread=1) == []
    assert _seqs(engine) == list(range(1, threads + 1))


def test_export_lines_are_checkpoints_then_entries_in_order(engine: Engine) -> None:
    append_many(engine, 3)
    checkpoint(engine, KEY)
    lines = [json.loads(line) for line in export_text(engine).splitlines()]
    assert [line["type"] for line in lines] == ["checkpoint", "entry", "entry", "entry"]
    assert [line["seq"] for line in lines[1:]] == [1, 2, 3]
    assert lines[0]["tree_size"] == 3
