"""Decoding and cleaning tool output: BOMs, UTF-16, code pages, CRLF, colour codes."""

from __future__ import annotations

import codecs

from device_policy.collectors.text import (
    clean_text,
    decode_output,
    first_line,
    g_strunescape,
    parse_int,
    split_colon,
)


def test_utf16_with_bom_as_powershell_saves_it() -> None:
    data = codecs.BOM_UTF16_LE + "State : Ready\r\n".encode("utf-16-le")
    assert decode_output(data) == "State : Ready\r\n"


def test_utf16_without_bom_is_recognised() -> None:
    assert decode_output("Pin State : Unlocked\r\n".encode("utf-16-le")) == "Pin State : Unlocked\r\n"


def test_utf8_bom_is_dropped() -> None:
    assert decode_output(codecs.BOM_UTF8 + "Größe".encode()) == "Größe"


def test_oem_code_page_bytes_still_decode() -> None:
    # cmd.exe redirecting a German console program: "Größe" in code page 850.
    assert decode_output("Größe:".encode("cp850")) == "Größe:"


def test_clean_text_normalises_line_ends_and_strips_colour() -> None:
    assert clean_text("\ufeff\x1b[32mSecureBoot enabled\r\n\x1b[0mx\ry") == ("SecureBoot enabled\nx\ny")


def test_clean_text_repairs_utf16_read_as_a_one_byte_encoding() -> None:
    misread = (codecs.BOM_UTF16_LE + "Ready\r\n".encode("utf-16-le")).decode("latin-1")
    assert clean_text(misread) == "Ready\n"


def test_first_line_skips_blanks_and_shortens() -> None:
    assert first_line("\n\n  error: no modem  \nmore") == "error: no modem"
    assert first_line("x" * 300, limit=10) == "x" * 9 + "…"


def test_split_colon_keeps_colons_in_the_value() -> None:
    assert split_colon("    Physical Address   : 00:a0:c6:00:00:04") == (
        "Physical Address",
        "00:a0:c6:00:00:04",
    )
    assert split_colon("no colon here") is None


def test_glib_escapes_are_undone() -> None:
    # mmcli -K runs values through g_strescape: UTF-8 bytes become octal escapes.
    assert g_strunescape('O2 \\303\\234K \\"home\\"') == 'O2 ÜK "home"'


def test_parse_int_reads_hex_and_decimal() -> None:
    assert parse_int("0x258") == 600
    assert parse_int(" 300 ") == 300
    assert parse_int("never") is None
