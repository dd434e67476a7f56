"""An export line verifies only as the exact canonical encoding of what it holds: a duplicated key,
a spelt-out null, whitespace or a blank line fails, naming the line — whole and filtered exports."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from records.audit.chain import AuditEntry
from records.audit.export import verify_export_file
from records.audit.verify import VerifyReport, write_export
from tests.records.test_audit_chain_verify import KEY, build, checkpoint_at

CHAIN = build(30)
CHECKPOINTS = [checkpoint_at(CHAIN, 10), checkpoint_at(CHAIN, 30)]


def _text(redact: bool = False) -> list[str]:
    out = io.StringIO()
    write_export(CHAIN, CHECKPOINTS, out)
    lines = out.getvalue().splitlines(keepends=True)
    if redact:
        # A filtered export: entry 2 redacted to its chain link, as export_log writes it.
        e: AuditEntry = CHAIN[1]
        lines[3] = (
            f'{{"entry_hash":"{e.entry_hash}","prev_hash":"{e.prev_hash}","seq":2,"type":"redacted"}}\n'
        )
    return lines


def _verify(lines: list[str]) -> VerifyReport:
    return verify_export_file(io.StringIO("".join(lines)), KEY.public_key())


def _entry_line(lines: list[str], seq: int) -> int:
    return next(i for i, line in enumerate(lines) if f'"seq":{seq},"ts"' in line)


@pytest.mark.parametrize("redact", [False, True], ids=["whole", "filtered"])
def test_the_exported_lines_verify_as_written(redact: bool) -> None:
    report = _verify(_text(redact))
    assert report.ok and report.entries_checked == 30, report.message


def _duplicate_outcome(line: str) -> str:
    # The line keeps its hash ("allowed" is what was hashed); a naive reader takes the last key.
    return line.replace('"outcome":"allowed"', '"outcome":"allowed","outcome":"denied"')


def _explicit_null(line: str) -> str:
    return line.replace(',"data"', ',"consultation_id":null,"data"')


def _spaced(line: str) -> str:
    return line.replace('","', '", "')


def _escaped(line: str) -> str:
    return line.replace('"HMP Example"', '"HMP \\u0045xample"')


@pytest.mark.parametrize("redact", [False, True], ids=["whole", "filtered"])
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_duplicate_outcome, 'has the key "outcome" twice'),
        (_explicit_null, "is not exactly the entry it holds"),
        (_spaced, "is not in canonical form"),
        (_escaped, "is not in canonical form"),
        (lambda line: line.replace("\n", "\r\n"), "is not in canonical form"),
        (lambda line: line + "\n", "is empty"),
    ],
    ids=["duplicate-key", "explicit-null", "whitespace", "escape", "crlf", "blank-line"],
)
def test_a_non_canonical_entry_line_fails_naming_the_line(
    redact: bool, change: Callable[[str], str], reason: str
) -> None:
    lines = _text(redact)
    at = _entry_line(lines, 5)
    assert lines[at].count('"outcome":"allowed"') == 1
    lines[at] = change(lines[at])
    report = _verify(lines)
    assert not report.ok
    assert report.problem == "malformed"
    blank = reason == "is empty"
    assert report.first_bad_seq == (6 if blank else 5), report.message
    assert f"Line {at + 1 + blank}" in report.message and reason in report.message, report.message
    assert "HMP" not in report.message and "allowed" not in report.message


@pytest.mark.parametrize("redact", [False, True], ids=["whole", "filtered"])
def test_a_checkpoint_line_with_a_duplicated_key_fails(redact: bool) -> None:
    lines = _text(redact)
    assert '"tree_size":10,' in lines[0]
    lines[0] = lines[0].replace('"tree_size":10,', '"tree_size":10,"tree_size":10,')
    report = _verify(lines)
    # Nothing in a line that does not parse can be believed, not even that it is a checkpoint:
    # it is reported where it stands, before entry 1.
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "malformed", 1)
    assert 'Line 1 (where seq 1 belongs) has the key "tree_size" twice' in report.message, report.message


def test_a_redacted_line_with_anything_more_fails() -> None:
    lines = _text(redact=True)
    lines[3] = lines[3].replace('"seq":2,', '"seq":2,"note":"x",')
    report = _verify(lines)
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "malformed", 2)
    assert "Line 4" in report.message
