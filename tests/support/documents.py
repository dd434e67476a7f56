"""Small real documents for browser and records tests: a one-page PDF with text, made in pure
Python, checked, and imported for a patient through the admin API.

The PDF is written byte by byte (PDF 1.4, one page, Helvetica, a correct cross-reference
table), so no PDF library is needed. :func:`check_pdf` proves it is valid: with poppler's
``pdftoppm`` (Debian's poppler-utils) it renders the page and looks for ink, and
``pdftotext`` must read the text back; without them it checks the file's structure (every
cross-reference offset lands on its object, the stream length is right, one page).

Example::

    document = await import_pdf(server_url, admin_token, patient_id, title="Discharge letter")
    # document.id, document.content (the bytes), document.lines (the text on the page)
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx

PDF_TYPE = "application/pdf"
DEFAULT_TITLE = "Discharge letter"
DEFAULT_LINES = (
    "City General Hospital - discharge letter (test data, fictional)",
    "Laceration to the left forearm, closed under local anaesthetic.",
    "Dressings every two days; sutures out at day 10.",
    "Review by video with the prison GP at one week.",
)
# A4 in points; text starts 56 pt (about 2 cm) from the left and top.
_PAGE_W, _PAGE_H, _MARGIN = 595, 842, 56


class InvalidPdf(AssertionError):
    """The bytes are not the valid one-page PDF they should be; the message says what is wrong."""


def _pdf_string(text: str) -> bytes:
    """A PDF literal string: Latin-1 (WinAnsi) text with \\, ( and ) escaped."""
    try:
        raw = text.encode("cp1252")
    except UnicodeEncodeError as exc:
        raise ValueError(f"PDF text must be in Windows-1252: {text!r}") from exc
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def pdf_with_text(lines: Sequence[str] = DEFAULT_LINES, *, title: str = DEFAULT_TITLE) -> bytes:
    """A valid one-page A4 PDF: ``title`` as a heading, then each of ``lines``."""
    top = _PAGE_H - _MARGIN
    content = b"\n".join(
        [
            b"BT",
            b"/F1 20 Tf",
            f"{_MARGIN} {top} Td".encode(),
            _pdf_string(title) + b" Tj",
            b"/F1 12 Tf",
            b"16 TL",
            b"0 -32 Td",
            *(_pdf_string(line) + b" Tj T*" for line in lines),
            b"ET",
        ]
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_PAGE_W} {_PAGE_H}] "
            "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
        ).encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
        b"<< /Title " + _pdf_string(title) + b" /Producer (telemed tests) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # the binary comment marks the file as binary
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode()
    out += b"0000000000 65535 f \n"  # each entry is exactly 20 bytes
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def check_pdf(content: bytes, *, expect_text: Sequence[str] = ()) -> str:
    """Prove ``content`` is a valid one-page PDF (rendered by poppler if present); says how it was checked."""
    check_pdf_structure(content)
    if shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None:
        return "structure"
    with tempfile.TemporaryDirectory(prefix="telemed-pdf-") as tmp:
        source = Path(tmp) / "document.pdf"
        source.write_bytes(content)
        _render_has_ink(source, Path(tmp) / "page")
        text = _run(["pdftotext", "-layout", str(source), "-"])
    missing = [wanted for wanted in expect_text if wanted not in text]
    if missing:
        raise InvalidPdf(f"pdftotext does not find {missing!r} in the PDF; it reads {text!r}")
    return "pdftoppm"


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, timeout=30, check=False)
    errors = done.stderr.decode(errors="replace").strip()
    # Poppler reports a damaged file on stderr and may still exit 0 after repairing it.
    if done.returncode != 0 or errors:
        raise InvalidPdf(f"{args[0]} exited {done.returncode}: {errors or 'no message'}")
    return done.stdout.decode(errors="replace")


def _render_has_ink(source: Path, stem: Path) -> None:
    """Render page 1 as a greyscale PGM and require dark pixels on it (the text)."""
    _run(["pdftoppm", "-gray", "-r", "36", "-singlefile", str(source), str(stem)])
    pgm = stem.with_suffix(".pgm").read_bytes()
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", pgm)
    if header is None:
        raise InvalidPdf("pdftoppm did not write a greyscale image")
    width, height = int(header.group(1)), int(header.group(2))
    pixels = pgm[header.end() : header.end() + width * height]
    if len(pixels) != width * height:
        raise InvalidPdf("pdftoppm wrote a truncated image")
    dark = sum(1 for value in pixels if value < 128)
    if dark == 0:
        raise InvalidPdf("the rendered page is blank")


def check_pdf_structure(content: bytes) -> None:
    """Check the file's structure: header, xref offsets, stream length, one page, trailer."""
    if not content.startswith(b"%PDF-1."):
        raise InvalidPdf("no %PDF-1.x header")
    if not content.rstrip().endswith(b"%%EOF"):
        raise InvalidPdf("no %%EOF at the end")
    found = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", content)
    if found is None:
        raise InvalidPdf("no startxref")
    xref = int(found.group(1))
    table = re.compile(rb"xref\s+0 (\d+)\s+").match(content, xref)
    if table is None:
        raise InvalidPdf(f"startxref {xref} does not point at an xref table")
    count = int(table.group(1))
    entries = content[table.end() : table.end() + 20 * count]
    for number in range(1, count):
        entry = entries[20 * number : 20 * number + 20]
        if not re.fullmatch(rb"\d{10} \d{5} n[ \r]\n", entry):
            raise InvalidPdf(f"xref entry {number} is malformed: {entry!r}")
        offset = int(entry[:10])
        if not content.startswith(f"{number} 0 obj".encode(), offset):
            raise InvalidPdf(f"xref entry {number} points at byte {offset}, not at object {number}")
    trailer = re.search(rb"trailer\s*<<(.*?)>>\s*startxref", content, re.S)
    if (
        trailer is None
        or f"/Size {count}".encode() not in trailer.group(1)
        or b"/Root" not in trailer.group(1)
    ):
        raise InvalidPdf("the trailer lacks /Size matching the xref table or /Root")
    for stream in re.finditer(rb"/Length (\d+)\s*>>\s*stream\r?\n", content):
        end = stream.end() + int(stream.group(1))
        if not re.match(rb"\r?\nendstream", content[end : end + 12]):
            raise InvalidPdf(f"the stream at byte {stream.start()} is not /Length {stream.group(1)!r} long")
    if len(re.findall(rb"/Type\s*/Page\b", content)) != 1 or b"/Count 1" not in content:
        raise InvalidPdf("not exactly one page")


@dataclass(frozen=True)
class ImportedDocument:
    """A document imported for a patient: the server's id and what was sent."""

    id: str
    patient_id: str
    title: str
    content: bytes = field(repr=False)
    content_type: str
    lines: tuple[str, ...]
    sha256: str

    @property
    def size(self) -> int:
        """Bytes sent (and stored, once decrypted)."""
        return len(self.content)


async def import_pdf(
    server_url: str,
    admin_token: str,
    patient_id: str,
    *,
    title: str = DEFAULT_TITLE,
    lines: Sequence[str] = DEFAULT_LINES,
    doc_type: str = "letter",
    document_date: date | None = None,
    author: str = "Dr R. Hale",
) -> ImportedDocument:
    """Make a one-page PDF, check it, and import it for the patient as an admin (the records API)."""
    content = pdf_with_text(lines, title=title)
    check_pdf(content, expect_text=[title, *lines])
    async with httpx.AsyncClient(base_url=server_url.rstrip("/"), timeout=30.0) as http:
        response = await http.post(
            f"/api/v1/records/patients/{patient_id}/documents",
            params={
                "doc_type": doc_type,
                "title": title,
                "document_date": (document_date or date.today()).isoformat(),
                "author": author,
            },
            content=content,
            headers={"Authorization": f"Bearer {admin_token}", "Content-Type": PDF_TYPE},
        )
    if response.status_code != 201:
        raise AssertionError(f"importing the PDF answered {response.status_code}: {response.text}")
    body = response.json()
    digest = hashlib.sha256(content).hexdigest()
    if body.get("sha256") != digest or body.get("size") != len(content):
        raise AssertionError("the server's size or SHA-256 of the imported PDF differs from the file's")
    return ImportedDocument(
        id=str(body["id"]),
        patient_id=patient_id,
        title=title,
        content=content,
        content_type=PDF_TYPE,
        lines=tuple(lines),
        sha256=digest,
    )
