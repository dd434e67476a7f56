"""The layout ``netsh mbn show …`` uses: a header line, then indented ``Key : value`` lines.

With ``interface=*`` one header and block follow another; ``show interfaces`` has a
single header for all interfaces, so a key seen twice also starts a new record. Keys
are compared lower-cased with single spaces.
"""

from __future__ import annotations

from device_policy.collectors.text import clean_text

NetshRecord = dict[str, str]


def normalise_key(key: str) -> str:
    """``"SIM ICC Id"`` → ``"sim icc id"``."""
    return " ".join(key.lower().split())


def parse_records(text: str | bytes) -> tuple[list[str], list[NetshRecord]]:
    """The unindented lines (headers, messages) and the records of indented key-values."""
    headers: list[str] = []
    records: list[NetshRecord] = []
    current: NetshRecord | None = None
    for line in clean_text(text).splitlines():
        if not line.strip() or set(line.strip()) == {"-"}:
            continue
        if not line[0].isspace():
            headers.append(line.strip())
            current = None
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = normalise_key(key)
        if current is None or key in current:
            current = {}
            records.append(current)
        current[key] = value.strip()
    return headers, records
