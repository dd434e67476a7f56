"""Unambiguous byte encodings for associated data (length-prefixed, big-endian)."""

from __future__ import annotations

import struct

_U32 = struct.Struct(">I")
U32_MAX = 2**32 - 1


def u32(value: int) -> bytes:
    """Encode ``value`` as a 4-byte big-endian unsigned integer."""
    if not 0 <= value <= U32_MAX:
        raise ValueError(f"{value} does not fit in 32 bits")
    return _U32.pack(value)


def fields(*parts: bytes) -> bytes:
    """Concatenate ``parts``, each prefixed with its 4-byte length, so no two tuples collide."""
    return b"".join(u32(len(part)) + part for part in parts)
