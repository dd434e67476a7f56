"""A head rolled back below a signed checkpoint (entries cut, head reset, trigger dropped) fails
verification — in the stored log and in an export — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlmodel import Session

from records.audit.export import verify_stored_log
from records.audit.log import AuditLogCorrupt, create_checkpoint, head, iter_checkpoints
from server.db import make_engine
from tests.records.audit_helpers import append_many, checkpoint, export_text, roll_back_head, verify_text

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = make_engine(db_url)
    append_many(built, 20)
    checkpoint(built, KEY)
    append_many(built, 9, start=21)
    checkpoint(built, KEY)
    yield built
    built.dispose()


def test_the_intact_log_verifies_up_to_its_last_checkpoint(engine: Engine) -> None:
    with Session(engine) as session:
        stored = verify_stored_log(session=session, public_key=KEY.public_key())
    assert stored.report.ok and stored.head_seq == 29 and stored.report.anchored_size == 29
    assert verify_text(export_text(engine), KEY).ok


def test_a_rolled_back_head_fails_stored_verification_as_truncated(engine: Engine) -> None:
    roll_back_head(engine, 27)
    with Session(engine) as session:
        assert head(session=session).seq == 27
        assert [c.tree_size for c in iter_checkpoints(session=session)] == [20, 29]
        stored = verify_stored_log(session=session, public_key=KEY.public_key())
    report = stored.report
    assert not report.ok
    assert (report.problem, report.first_bad_seq, stored.head_seq) == ("truncated", 28, 27)
    assert "ends at seq 27" in report.message and "covers 29 entries" in report.message


def test_an_export_after_a_rollback_keeps_the_checkpoint_and_fails_offline(engine: Engine) -> None:
    roll_back_head(engine, 27)
    text = export_text(engine)
    sizes = [json.loads(line)["tree_size"] for line in text.splitlines() if '"type":"checkpoint"' in line]
    assert sizes == [20, 29]
    report = verify_text(text, KEY)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "truncated", 28)


def test_a_filtered_export_after_a_rollback_fails_offline_too(engine: Engine) -> None:
    roll_back_head(engine, 27)
    report = verify_text(export_text(engine, include=lambda e: e.seq % 2 == 0), KEY)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "truncated", 28)


def test_no_checkpoint_is_signed_over_a_head_behind_a_stored_checkpoint(engine: Engine) -> None:
    roll_back_head(engine, 27)
    append_many(engine, 3, start=100)  # the log grows again past the old size, on a new history
    with Session(engine) as session, pytest.raises(AuditLogCorrupt, match="29"):
        create_checkpoint(session=session, private_key=KEY)
    roll_back_head(engine, 25)
    with Session(engine) as session, pytest.raises(AuditLogCorrupt, match="head is at seq 25"):
        create_checkpoint(session=session, private_key=KEY)
