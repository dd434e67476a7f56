"""Canonical JSON: one byte string per value, so that signatures and hashes are reproducible.

A subset of RFC 8785 (JSON Canonicalization Scheme), documented in ``docs/policy.md``:

* objects: keys are strings, sorted by their UTF-16 code units, no duplicates;
* no whitespace anywhere; ``null``, ``true``, ``false`` as literals;
* strings: UTF-8, only ``"``, ``\\`` and control characters below U+0020 escaped
  (``\\b \\f \\n \\r \\t`` short forms, otherwise ``\\u00xx`` in lower-case hex);
  lone surrogates are refused;
* integers: only within ±(2**53 - 1), the range a double holds exactly, so that a
  JavaScript or Go verifier reads the same number;
* floats: finite only (NaN and ±Infinity refused), written as ECMAScript's
  ``Number.prototype.toString`` writes them (``-0`` → ``0``, ``1e+30``, ``0.000001``,
  ``1e-7``), so ``5.0`` and ``5`` are the same bytes.

Python values only: ``dict``, ``list``/``tuple``, ``str``, ``int``, ``float``, ``bool``,
``None``. Pydantic models go through ``model_dump(mode="json")`` first.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from device_policy.errors import CanonicalJsonError

MAX_SAFE_INTEGER = 2**53 - 1
_MAX_DEPTH = 64

_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPES = str.maketrans(
    {chr(c): _SHORT_ESCAPES.get(c, f"\\u{c:04x}") for c in range(0x20)} | {'"': '\\"', "\\": "\\\\"}
)


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` to its canonical JSON bytes (RFC 8785 subset)."""
    parts: list[str] = []
    _write(value, parts, 0)
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalJsonError("A string contains a lone surrogate") from exc


def canonical_sha256(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``, as lower-case hex."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def format_number(value: float) -> str:
    """Write a finite float the way ECMAScript ``Number.prototype.toString`` does."""
    if not math.isfinite(value):
        raise CanonicalJsonError("NaN and Infinity have no JSON form")
    if value == 0:
        return "0"  # also -0.0
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digit string that round-trips, as ECMAScript requires.
    digits_tuple, exponent = _digits(abs(value))
    digits = "".join(map(str, digits_tuple))
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def _digits(value: float) -> tuple[tuple[int, ...], int]:
    decimal = Decimal(repr(value)).normalize()
    _, digits, exponent = decimal.as_tuple()
    assert isinstance(exponent, int)  # noqa: S101 - finite by the check above
    return tuple(digits), exponent


def _write(value: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise CanonicalJsonError(f"Nesting deeper than {_MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJsonError("Integer outside ±(2**53 - 1) cannot be carried safely")
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        _write_object(value, out, depth)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalJsonError(f"A {type(value).__name__} has no canonical JSON form")


def _write_object(value: Mapping[Any, Any], out: list[str], depth: int) -> None:
    for key in value:
        if not isinstance(key, str):
            raise CanonicalJsonError(f"Object keys must be strings, not {type(key).__name__}")
    try:
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
    except UnicodeEncodeError as exc:
        raise CanonicalJsonError("An object key contains a lone surrogate") from exc
    out.append("{")
    for index, key in enumerate(keys):
        if index:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _write(value[key], out, depth + 1)
    out.append("}")


def _string(value: str) -> str:
    return '"' + value.translate(_ESCAPES) + '"'
