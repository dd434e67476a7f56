"""Turning raw command output into clean text, and the small line parsers tools share.

Windows tools write in the console code page, PowerShell's ``>`` saves UTF-16 LE with a
byte-order mark, and everything on Windows ends lines with CRLF; some Linux tools colour
their output. Parsers only ever see text that went through :func:`clean_text`.
"""

from __future__ import annotations

import codecs
import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_OCTAL_OR_CHAR_ESCAPE = re.compile(r"\\([0-7]{1,3}|.)")
_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}


def decode_output(data: bytes) -> str:
    """Decode a tool's output bytes, honouring a BOM and sniffing BOM-less UTF-16."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    if _looks_like_utf16_le(data):
        return data.decode("utf-16-le", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # Console programs on Windows write in the OEM code page; the codec exists there only.
        return data.decode("oem")
    except (LookupError, UnicodeDecodeError):
        # Elsewhere assume a Western-European OEM page (what a saved German console output
        # uses); it maps every byte, so the ASCII keys parsers look for always survive.
        return data.decode("cp850")


def _looks_like_utf16_le(data: bytes) -> bool:
    if len(data) < 4 or len(data) % 2:
        return False
    odd_zeros = data[1::2].count(0)
    even_zeros = data[0::2].count(0)
    return odd_zeros >= len(data) // 4 and even_zeros == 0


def clean_text(text: str | bytes) -> str:
    """Decode if needed, drop a BOM and colour codes, and end every line with ``\\n``."""
    if isinstance(text, bytes):
        text = decode_output(text)
    elif "\x00" in text:
        # UTF-16 read as a one-byte encoding: recover the bytes and decode them properly.
        try:
            text = decode_output(text.encode("latin-1"))
        except UnicodeEncodeError:
            text = text.replace("\x00", "")
    text = text.lstrip("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _ANSI.sub("", text)


def first_line(text: str, limit: int = 160) -> str:
    """The first non-blank line of ``text``, shortened to ``limit`` characters."""
    for line in clean_text(text).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def split_colon(line: str) -> tuple[str, str] | None:
    """Split ``"Key   : value"`` at its first colon; ``None`` when there is none."""
    key, sep, value = line.partition(":")
    if not sep or not key.strip():
        return None
    return key.strip(), value.strip()


def g_strunescape(value: str) -> str:
    """Undo GLib's ``g_strescape`` (mmcli ``-K`` escapes non-ASCII as octal bytes)."""
    if "\\" not in value:
        return value
    out = bytearray()
    pos = 0
    for match in _OCTAL_OR_CHAR_ESCAPE.finditer(value):
        out += value[pos : match.start()].encode("utf-8")
        body = match.group(1)
        if body[0] in "01234567":
            out.append(int(body, 8) & 0xFF)
        else:
            out += _C_ESCAPES.get(body, body).encode("utf-8")
        pos = match.end()
    out += value[pos:].encode("utf-8")
    return out.decode("utf-8", errors="replace")


def parse_int(value: str | None) -> int | None:
    """An integer in decimal or ``0x`` hex, or ``None``."""
    if value is None:
        return None
    value = value.strip()
    try:
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None
