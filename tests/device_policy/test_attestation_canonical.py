"""Canonical JSON: known vectors (RFC 8785) and the values it refuses."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest

from device_policy.canonical import MAX_SAFE_INTEGER, canonical_json, canonical_sha256
from device_policy.errors import CanonicalJsonError


def test_rfc8785_example() -> None:
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": '\u20ac$\u000f\nA\'B"\\\\"/',
        "literals": [None, True, False],
    }

    assert canonical_json(value) == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


@pytest.mark.parametrize(
    ("ieee", "text"),
    [  # RFC 8785 appendix B
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_numbers_are_written_as_ecmascript_writes_them(ieee: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(ieee))

    assert canonical_json(value) == text.encode()


def test_keys_sort_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }

    # U+1F600 is the surrogate pair D83D DE00 in UTF-16, so it sorts before U+FB33.
    assert canonical_json(value).decode() == (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )


def test_no_whitespace_and_nested_keys_sorted() -> None:
    value = {"b": [1, {"z": None, "a": True}], "a": {"y": "x", "c": []}}

    assert canonical_json(value) == b'{"a":{"c":[],"y":"x"},"b":[1,{"a":true,"z":null}]}'


def test_strings_escape_only_quote_backslash_and_control_characters() -> None:
    value = '\x00\x08\t\n\x0c\r\x1f \x7f\u2028é"\\/'

    assert canonical_json(value) == (b'"\\u0000\\b\\t\\n\\f\\r\\u001f \x7f\xe2\x80\xa8\xc3\xa9\\"\\\\/"')


def test_integral_floats_and_ints_are_the_same_bytes() -> None:
    assert canonical_json({"n": 5.0}) == canonical_json({"n": 5}) == b'{"n":5}'


def test_tuples_are_arrays() -> None:
    assert canonical_json(("a", 1)) == b'["a",1]'


def test_largest_safe_integers_pass() -> None:
    assert canonical_json([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (b"[9007199254740991,-9007199254740991]")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "NaN and Infinity have no JSON form"),
        (float("inf"), "NaN and Infinity have no JSON form"),
        ({"x": [float("-inf")]}, "NaN and Infinity have no JSON form"),
        (MAX_SAFE_INTEGER + 1, "Integer outside"),
        (-(2**63), "Integer outside"),
        ({1: "a"}, "Object keys must be strings, not int"),
        ("\ud800", "lone surrogate"),
        ({"\udfff": 1}, "lone surrogate"),
        (b"bytes", "A bytes has no canonical JSON form"),
        ({"when": object()}, "A object has no canonical JSON form"),
        ({1.5, 2.5}, "A set has no canonical JSON form"),
    ],
)
def test_values_without_a_canonical_form_are_refused(value: Any, message: str) -> None:
    with pytest.raises(CanonicalJsonError, match=message) as caught:
        canonical_json(value)

    assert caught.value.code == "canonical_json_error"


def test_deep_nesting_is_refused() -> None:
    value: Any = []
    for _ in range(100):
        value = [value]

    with pytest.raises(CanonicalJsonError, match="Nesting deeper than 64 levels"):
        canonical_json(value)


def test_sha256_is_over_the_canonical_bytes() -> None:
    assert canonical_sha256({}) == hashlib.sha256(b"{}").hexdigest()
    assert canonical_sha256({"b": 1, "a": 2}) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()
