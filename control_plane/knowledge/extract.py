"""Turn an uploaded file or a fetched web page into structured text blocks for a bot's knowledge base.

The output keeps the structure the chunker needs: headings, paragraphs and list items stay separate blocks, a table or
spreadsheet row is one ``table_row`` block that carries its header, and a question/answer pair is one ``qa`` block, so
"how much is X" can find the one row with X and its price.

    document = extract(data, "prices.xlsx", max_bytes=settings.max_upload_bytes)
    for block in document.blocks:
        ...  # Block(kind="table_row", text="Item: Green tea; Price: 45 000", meta={"header": [...], "row": [...]})

The file type is decided from the content (magic bytes, the zip's content types, whether the bytes decode as text),
never from the name alone; the name only breaks ties between text formats and names the format in error messages.
Failures raise :class:`ExtractionError`, whose ``message`` is an English msgid the API layer translates.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import logging
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import PurePosixPath
from typing import Any, Literal

from bot_runtime.i18n import N_

__all__ = [
    "Block",
    "BlockKind",
    "DocumentKind",
    "ExtractedDocument",
    "ExtractionError",
    "content_hash",
    "decode_html",
    "detect_kind",
    "extract",
    "extract_html",
]

log = logging.getLogger("botfactory.knowledge")

BlockKind = Literal["heading", "paragraph", "list_item", "table_row", "qa"]
DocumentKind = Literal["pdf", "docx", "xlsx", "csv", "text", "html"]

# Extracted text beyond this is refused rather than indexed: it bounds memory for pathological files (a PDF of a
# phone book, a spreadsheet with a million rows) and is far above any real FAQ, manual or price list.
DEFAULT_MAX_CHARS = 5_000_000
# A DOCX/XLSX is a zip; refusing archives that claim to unpack to more than this stops decompression bombs.
MAX_UNZIPPED_BYTES = 256 * 1024 * 1024

# Error messages (English msgids; the API layer translates them with ``gettext(message, **params)``).
EMPTY_FILE = N_("The file is empty.")
FILE_TOO_LARGE = N_("The file is too large. The maximum size is %(max_mb)s MB.")
UNSUPPORTED_TYPE = N_("This file type is not supported.")
LEGACY_OFFICE = N_(
    "This file is in an old Office format or is password-protected. "
    "Save it as .docx or .xlsx without a password and upload it again."
)
NOT_REAL_FORMAT = N_("This file is damaged or is not a real %(format)s file.")
FILE_DAMAGED = N_("This file is damaged and cannot be read.")
PDF_ENCRYPTED = N_("This PDF is password-protected. Remove the password and upload it again.")
PDF_NO_TEXT = N_(
    "This PDF has no text that can be read; it is probably a scanned image. "
    "Upload a PDF with selectable text, or paste the text instead."
)
PDF_DAMAGED = N_("This PDF file is damaged and cannot be read.")
DOCX_DAMAGED = N_("This Word document is damaged and cannot be read.")
XLSX_DAMAGED = N_("This spreadsheet is damaged and cannot be read.")
CSV_DAMAGED = N_("This CSV file could not be read.")
ENCODING_UNSUPPORTED = N_("The text encoding of this file is not supported. Save it as UTF-8 and upload it again.")
NO_TEXT = N_("The file has no text to learn from.")
TOO_MUCH_TEXT = N_("The file has too much text. Split it into smaller files and upload them separately.")


class ExtractionError(Exception):
    """A source could not be turned into text.

    Attributes:
        message: English msgid, translated when shown (``gettext(error.message, **error.params)``).
        params: values for the ``%(name)s`` placeholders in ``message``.
        code: stable machine-readable reason (``empty``, ``too_large``, ``unsupported_type``, ``encrypted``, ...).
    """

    code: str = "extraction_failed"
    message: str = FILE_DAMAGED

    def __init__(self, message: str | None = None, *, code: str | None = None, params: dict[str, Any] | None = None):
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        self.params: dict[str, Any] = params or {}
        super().__init__(self.message % self.params if self.params else self.message)


@dataclass(slots=True)
class Block:
    """One structural unit of a document.

    ``level`` is the heading level (1 = top) for headings, the nesting depth (0 = top) for list items, else 0.
    ``meta`` carries structure the text alone loses: ``{"header": [...], "row": [...], "sheet": name}`` for table rows,
    ``{"question": ..., "answer": ...}`` for Q&A pairs, ``{"page": n}`` for PDF blocks.
    """

    kind: BlockKind
    text: str
    level: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ExtractedDocument:
    """A file or page as a title plus ordered blocks; ``meta`` holds format details (pages, sheets, encoding, url)."""

    title: str
    kind: DocumentKind
    blocks: list[Block]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The blocks as readable plain text (Markdown-like), e.g. for the owner's "extracted text" view."""
        return render_text(self.blocks)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for storing the extraction next to the source."""
        return {
            "title": self.title,
            "kind": self.kind,
            "meta": self.meta,
            "blocks": [{"kind": b.kind, "text": b.text, "level": b.level, "meta": b.meta} for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ExtractedDocument:
        """Rebuild a document stored with :meth:`to_dict`."""
        blocks = [
            Block(kind=item["kind"], text=item["text"], level=item.get("level", 0), meta=item.get("meta") or {})
            for item in value.get("blocks", [])
        ]
        return cls(title=value.get("title", ""), kind=value["kind"], blocks=blocks, meta=value.get("meta") or {})


def render_text(blocks: Sequence[Block]) -> str:
    """Render blocks as Markdown-like text: ``#`` headings, ``-`` list items, one line per table row."""
    out: list[str] = []
    previous: str | None = None
    for block in blocks:
        if block.kind == "heading":
            line = "#" * max(1, min(block.level, 6)) + " " + block.text
        elif block.kind == "list_item":
            line = "  " * block.level + "- " + block.text
        else:
            line = block.text
        # Rows of one table and items of one list read best on consecutive lines; everything else gets a blank line.
        tight = previous == block.kind and block.kind in ("list_item", "table_row")
        if out and not tight:
            out.append("")
        out.append(line)
        previous = block.kind
    return "\n".join(out)


def content_hash(data: bytes) -> str:
    """SHA-256 of the raw bytes, hex; equal hashes mean a duplicate upload."""
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# Type detection


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BINARY_EXTENSIONS = {"pdf": "PDF", "docx": "DOCX", "xlsx": "XLSX", "xlsm": "XLSX", "doc": "DOC", "xls": "XLS"}
_TEXT_EXTENSIONS = {"txt", "text", "md", "markdown"}
_CSV_EXTENSIONS = {"csv", "tsv"}
_HTML_EXTENSIONS = {"html", "htm", "xhtml"}
_DOCX_TYPES = (b"wordprocessingml.document.main", b"ms-word.document.macroEnabled.main")
_XLSX_TYPES = (b"spreadsheetml.sheet.main", b"ms-excel.sheet.macroEnabled.main")


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower().lstrip(".")


def _stem(filename: str | None) -> str:
    if not filename:
        return ""
    return PurePosixPath(filename.replace("\\", "/")).stem.strip()


def detect_kind(data: bytes, filename: str | None) -> DocumentKind:
    """Decide the document kind from the bytes: ``pdf``, ``docx``, ``xlsx``, ``csv``, ``text`` or ``html``.

    Binary formats are recognised only by their content. The name matters only for text (``.csv`` vs ``.txt``) and to
    refuse a file whose name promises a binary format its bytes do not have, which is almost always a failed download
    or export (often an HTML error page saved as ``.docx``) that should not end up in the knowledge base.

    Raises:
        ExtractionError: empty, unsupported or damaged content.
    """
    if not data:
        raise ExtractionError(EMPTY_FILE, code="empty")
    ext = _extension(filename)
    claimed = _BINARY_EXTENSIONS.get(ext)
    if data[:1024].lstrip(b"\x00\t\n\r \xef\xbb\xbf").startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(_OLE_MAGIC):
        # Word 97-2003, Excel 97-2003, and also any password-protected DOCX/XLSX (Office wraps those in OLE).
        raise ExtractionError(LEGACY_OFFICE, code="legacy_office")
    if data.startswith(b"PK\x03\x04"):
        kind = _ooxml_kind(data)
        if kind is not None:
            return kind
        if claimed:
            raise ExtractionError(NOT_REAL_FORMAT, code="damaged", params={"format": claimed})
        raise ExtractionError(UNSUPPORTED_TYPE, code="unsupported_type")
    if data.lstrip()[:6].lower() == b"{\\rtf1":
        raise ExtractionError(UNSUPPORTED_TYPE, code="unsupported_type")
    decoded = _decode_text(data)
    if decoded is None:
        if claimed:
            raise ExtractionError(NOT_REAL_FORMAT, code="damaged", params={"format": claimed})
        if ext in _TEXT_EXTENSIONS | _CSV_EXTENSIONS:
            raise ExtractionError(ENCODING_UNSUPPORTED, code="encoding")
        raise ExtractionError(UNSUPPORTED_TYPE, code="unsupported_type")
    text = decoded[0]
    if ext in ("xls", "doc"):
        # Accounting and web systems (1C among them) export HTML tables or tab-separated text named .xls/.doc.
        if _looks_like_html(text):
            return "html"
        if _looks_like_csv(text):
            return "csv"
    if claimed:
        raise ExtractionError(NOT_REAL_FORMAT, code="damaged", params={"format": claimed})
    if ext in _HTML_EXTENSIONS or _looks_like_html(text):
        return "html"
    if ext in _CSV_EXTENSIONS:
        return "csv"
    if ext not in _TEXT_EXTENSIONS and _looks_like_csv(text):
        return "csv"
    return "text"


def _ooxml_kind(data: bytes) -> DocumentKind | None:
    """``docx``/``xlsx`` for an Office Open XML package, None for another zip; damaged zips raise."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            try:
                info = archive.getinfo("[Content_Types].xml")
            except KeyError:
                return None
            if info.file_size > 1024 * 1024:
                return None
            types = archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ExtractionError(FILE_DAMAGED, code="damaged") from exc
    if any(marker in types for marker in _DOCX_TYPES):
        return "docx"
    if any(marker in types for marker in _XLSX_TYPES):
        return "xlsx"
    return None


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:1024].lower()
    return head.startswith(("<!doctype html", "<html")) or ("<html" in head and ("<head" in head or "<body" in head))


def _looks_like_csv(text: str) -> bool:
    """True when the first lines split into the same number (≥ 2) of fields on one delimiter: a table, not prose."""
    lines = [line for line in text[:65536].splitlines()[:30] if line.strip()]
    if len(lines) < 2:
        return False
    delimiter, columns, share = _best_delimiter(lines)
    return delimiter is not None and columns >= 2 and share >= 0.9


def _best_delimiter(lines: Sequence[str]) -> tuple[str | None, int, float]:
    """The delimiter whose rows most consistently have the same field count, with that count and its share."""
    best: tuple[str | None, int, float] = (None, 1, 0.0)
    for delimiter in (";", ",", "\t", "|"):
        try:
            counts = [len(row) for row in csv.reader(lines, delimiter=delimiter) if any(cell.strip() for cell in row)]
        except csv.Error:
            continue
        if not counts:
            continue
        columns, hits = Counter(counts).most_common(1)[0]
        share = hits / len(counts)
        if columns >= 2 and (share, columns) > (best[2], best[1]):
            best = (delimiter, columns, share)
    return best


# --------------------------------------------------------------------------------------------------------------------
# Text decoding


def _decode_text(data: bytes) -> tuple[str, str] | None:
    """Decode bytes that are text (UTF-8 with or without BOM, UTF-16 with BOM, or cp1251) as (text, encoding).

    Returns None for binary data. cp1251 decodes nearly any byte string, so its result must also look like text.
    """
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            return None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            return None
        return (text, "utf-16") if _plausible_text(text) else None
    if b"\x00" in data[:65536]:
        return None
    try:
        text = data.decode("utf-8")
        return (text, "utf-8") if _plausible_text(text) else None
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few broken bytes (a cut-off last character, a stray byte from an old editor) is still UTF-8;
    # reading it as cp1251 would turn every Cyrillic letter into mojibake. In real cp1251 text nearly every
    # non-ASCII byte is invalid UTF-8, so the share of failures tells the two apart.
    lenient = data.decode("utf-8", errors="replace")
    broken = lenient.count("\ufffd")
    non_ascii = sum(1 for ch in lenient if ord(ch) > 127)
    if non_ascii and broken / non_ascii < 0.1:
        cleaned = lenient.replace("\ufffd", "")
        return (cleaned, "utf-8") if _plausible_text(cleaned) else None
    text = data.decode("cp1251", errors="replace")
    return (text, "cp1251") if _plausible_text(text) else None


def _plausible_text(text: str) -> bool:
    sample = text[:20000]
    if not sample:
        return True
    bad = sum(
        1
        for ch in sample
        if ch == "\ufffd" or (unicodedata.category(ch) in ("Cc", "Co", "Cn") and ch not in "\t\n\r\f")
    )
    return bad / len(sample) < 0.01


_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]{0,100}encoding\s*=\s*["']([a-zA-Z0-9_.\-]+)""", re.IGNORECASE)


def decode_html(data: bytes, charset: str | None = None) -> str:
    """Decode a web page: BOM first, then the HTTP ``charset``, then a ``<meta charset>``, then UTF-8 / cp1251."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    head = data[:4096]
    declared = [charset]
    for pattern in (_META_CHARSET, _XML_ENCODING):
        match = pattern.search(head)
        if match:
            declared.append(match.group(1).decode("ascii", errors="ignore"))
    for name in declared:
        if not name:
            continue
        try:
            codec = codecs.lookup(name.strip().strip("\"'"))
        except LookupError:
            continue
        # Browsers read "iso-8859-1" and "ascii" as windows-1252; doing the same keeps curly quotes intact.
        codec_name = "cp1252" if codec.name in ("latin-1", "iso8859-1", "ascii") else codec.name
        return data.decode(codec_name, errors="replace")
    decoded = _decode_text(data)
    return decoded[0] if decoded else data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------------------------
# Cleaning and building blocks


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"), None)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def clean_text(text: str, *, single_line: bool = False) -> str:
    """NFC-normalise, drop invisible and control characters, collapse spaces, trim lines and runs of blank lines."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    if single_line:
        return " ".join(line for line in lines if line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class _Builder:
    """Collects cleaned, non-empty blocks and refuses documents whose text exceeds the character budget."""

    def __init__(self, max_chars: int) -> None:
        self.blocks: list[Block] = []
        self._remaining = max_chars

    def add(self, kind: BlockKind, text: str, *, level: int = 0, meta: dict[str, Any] | None = None) -> None:
        text = clean_text(text, single_line=kind == "heading")
        if not text:
            return
        self._remaining -= len(text)
        if self._remaining < 0:
            raise ExtractionError(TOO_MUCH_TEXT, code="too_much_text")
        self.blocks.append(Block(kind=kind, text=text, level=level, meta=meta or {}))


# Header words that turn a table into Q&A pairs (English, Uzbek Latin and Cyrillic, Russian).
_QUESTION_HEADERS = {"question", "questions", "q", "savol", "savollar", "савол", "саволлар", "вопрос", "вопросы"}
_ANSWER_HEADERS = {"answer", "answers", "a", "javob", "javoblar", "жавоб", "жавоблар", "ответ", "ответы"}


def _header_word(cell: str) -> str:
    return cell.strip().strip(":?.*#").strip().lower()


def _qa_columns(header: Sequence[str]) -> tuple[int, int] | None:
    words = [_header_word(cell) for cell in header]
    question = next((i for i, word in enumerate(words) if word in _QUESTION_HEADERS), None)
    answer = next((i for i, word in enumerate(words) if word in _ANSWER_HEADERS), None)
    if question is None or answer is None:
        return None
    return question, answer


def _row_text(header: Sequence[str], row: Sequence[str]) -> str:
    parts = []
    for name, value in zip(header, row, strict=False):
        if value:
            parts.append(f"{name}: {value}" if name else value)
    return "; ".join(parts)


def _add_table(
    builder: _Builder, rows: Iterable[Sequence[str]], *, sheet: str | None = None, heading: str | None = None
) -> None:
    """Emit one ``table_row`` (or ``qa``) block per data row; the first non-empty row is the header.

    Rows are consumed lazily so a long sheet is checked against the text budget as it streams in.
    """
    header: list[str] | None = None
    qa: tuple[int, int] | None = None
    width = 0
    rows_seen = 0
    extra_meta: dict[str, Any] = {"sheet": sheet} if sheet else {}
    for raw in rows:
        row = [clean_text(cell) for cell in raw]
        while row and not row[-1]:
            row.pop()
        if not row:
            continue
        if header is None:
            header = row
            width = len(header)
            qa = _qa_columns(header)
            if heading:
                builder.add("heading", heading, level=1)
            continue
        width = max(width, len(row))
        header += [""] * (width - len(header))
        row += [""] * (width - len(row))
        if row == header:
            continue  # a header repeated on every page of a long table
        rows_seen += 1
        if qa is not None:
            question, answer = row[qa[0]], row[qa[1]]
            if question and answer:
                builder.add("qa", f"{question}\n{answer}", meta={"question": question, "answer": answer, **extra_meta})
                continue
        builder.add("table_row", _row_text(header, row), meta={"header": list(header), "row": row, **extra_meta})
    if header is not None and rows_seen == 0:
        # A header with no rows under it is still text the owner put there.
        builder.add("paragraph", " | ".join(cell for cell in header if cell))


# --------------------------------------------------------------------------------------------------------------------
# Plain text and Markdown


_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s*(=+|-+)\s*$")
_BULLET = re.compile(r"^(\s*)(?:[-*+•●▪■◦‣–—]|\d{1,3}[.)])\s+(\S.*)$")
_RULE = re.compile(r"^\s*([-*_])(?:\s*\1){2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
_QUESTION_LINE = re.compile(r"^(?:q|question|savol|савол|вопрос)\s*[:.)\-]\s*(\S.*)$", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^(?:a|answer|javob|жавоб|ответ)\s*[:.)\-]\s*(.*)$", re.IGNORECASE)


def _markdown_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [cell.strip() for cell in line.split("|")]


def _add_paragraph(builder: _Builder, lines: list[str]) -> None:
    """A paragraph, or Q&A pairs when it is written as "Q: ... / A: ..." lines."""
    if _QUESTION_LINE.match(lines[0]):
        pairs: list[tuple[list[str], list[str]]] = []
        for line in lines:
            if _QUESTION_LINE.match(line):
                pairs.append(([_QUESTION_LINE.match(line).group(1)], []))  # type: ignore[union-attr]
            elif (answer := _ANSWER_LINE.match(line)) and not pairs[-1][1]:
                pairs[-1][1].append(answer.group(1))
            elif pairs[-1][1]:
                pairs[-1][1].append(line)
            else:
                pairs[-1][0].append(line)
        if all(answer for _, answer in pairs):
            for question_lines, answer_lines in pairs:
                question = clean_text(" ".join(question_lines))
                answer = clean_text("\n".join(answer_lines))
                if question and answer:
                    builder.add("qa", f"{question}\n{answer}", meta={"question": question, "answer": answer})
            return
    builder.add("paragraph", "\n".join(lines))


def _add_text(builder: _Builder, text: str) -> None:
    """Parse plain text or Markdown: ``#``/underlined headings, blank-line paragraphs, ``-``/``*``/``1.`` lists."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    paragraph: list[str] = []
    item: tuple[int, list[str]] | None = None

    def flush() -> None:
        nonlocal item
        if paragraph:
            _add_paragraph(builder, paragraph)
            paragraph.clear()
        if item is not None:
            builder.add("list_item", " ".join(item[1]), level=item[0])
            item = None

    i = 0
    while i < len(lines):
        line = lines[i].expandtabs(4)
        i += 1
        if not line.strip():
            flush()
            continue
        if _FENCE.match(line):
            flush()
            fence = _FENCE.match(line).group(1)  # type: ignore[union-attr]
            code: list[str] = []
            while i < len(lines) and not lines[i].strip().startswith(fence):
                code.append(lines[i])
                i += 1
            i += 1  # the closing fence
            builder.add("paragraph", "\n".join(code))
            continue
        if heading := _ATX_HEADING.match(line):
            flush()
            builder.add("heading", heading.group(2), level=len(heading.group(1)))
            continue
        if _SETEXT_UNDERLINE.match(line) and len(paragraph) == 1 and item is None:
            title = paragraph.pop()
            builder.add("heading", title, level=1 if line.strip().startswith("=") else 2)
            continue
        if _RULE.match(line):
            flush()
            continue
        if "|" in line and i < len(lines) and _TABLE_SEPARATOR.match(lines[i]):
            flush()
            rows = [_markdown_cells(line)]
            i += 1  # the separator
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(_markdown_cells(lines[i]))
                i += 1
            _add_table(builder, rows)
            continue
        if bullet := _BULLET.match(line):
            if paragraph:
                _add_paragraph(builder, paragraph)
                paragraph.clear()
            if item is not None:
                builder.add("list_item", " ".join(item[1]), level=item[0])
            item = (min(len(bullet.group(1)) // 2, 5), [bullet.group(2)])
            continue
        if item is not None:
            item[1].append(line.strip())
            continue
        paragraph.append(line.strip())
    flush()


# --------------------------------------------------------------------------------------------------------------------
# PDF


@dataclass(slots=True)
class _PdfLine:
    text: str
    y: float | None
    size: float


_LIST_MARKER = re.compile(r"^(?:[-•●▪■◦‣∙–—*]|\d{1,3}[.)])\s+\S")


def _pdf_lines(page: Any) -> list[_PdfLine]:
    """The page's text lines in reading order, each with its baseline height and font size.

    pypdf reports the text matrix with every fragment it extracts; the vertical gaps between lines are what separate
    paragraphs, and a larger font is what marks a heading, so both are kept.
    """
    lines: list[_PdfLine] = []
    current: list[str] = []
    position: list[float | None] = [None, 0.0]

    def finish() -> None:
        text = "".join(current)
        lines.append(_PdfLine(text=text, y=position[0], size=position[1] or 0.0))
        current.clear()
        position[0], position[1] = None, 0.0

    def visit(text: str, cm: Sequence[float], tm: Sequence[float], font: Any, font_size: float) -> None:
        if not text:
            return
        try:
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            scale = ((tm[2] ** 2 + tm[3] ** 2) ** 0.5) * ((cm[2] ** 2 + cm[3] ** 2) ** 0.5)
            size = abs(float(font_size)) * (scale or 1.0)
        except (TypeError, IndexError, ValueError):
            y, size = None, 0.0
        parts = text.split("\n")
        for index, part in enumerate(parts):
            if part.strip() and position[0] is None:
                position[0], position[1] = y, size
            current.append(part)
            if index < len(parts) - 1:
                finish()

    page.extract_text(visitor_text=visit)
    if current:
        finish()
    return lines


def _join_pdf_lines(lines: Sequence[str]) -> str:
    """Join layout-wrapped lines into one paragraph, undoing end-of-line hyphenation."""
    text = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text


def _extract_pdf(data: bytes, builder: _Builder) -> tuple[str | None, dict[str, Any]]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data))  # not strict: real-world PDFs are often slightly malformed
        if reader.is_encrypted:
            # An owner password alone (printing/copy restrictions) still opens with the empty user password.
            try:
                opened = reader.decrypt("")
            except (DependencyError, NotImplementedError, FileNotDecryptedError) as exc:
                raise ExtractionError(PDF_ENCRYPTED, code="encrypted") from exc
            if not opened:
                raise ExtractionError(PDF_ENCRYPTED, code="encrypted")
        pages = list(reader.pages)
    except ExtractionError:
        raise
    except Exception as exc:  # pypdf raises many unrelated types for broken files
        raise ExtractionError(PDF_DAMAGED, code="damaged") from exc

    page_lines: list[list[_PdfLine]] = []
    failures = 0
    for number, page in enumerate(pages, start=1):
        try:
            page_lines.append(_pdf_lines(page))
        except FileNotDecryptedError as exc:
            raise ExtractionError(PDF_ENCRYPTED, code="encrypted") from exc
        except Exception:
            log.warning("knowledge.pdf.page_failed", extra={"page": number}, exc_info=True)
            failures += 1
            page_lines.append([])
    if pages and failures == len(pages):
        raise ExtractionError(PDF_DAMAGED, code="damaged")

    sizes: Counter[float] = Counter()
    for lines in page_lines:
        for line in lines:
            if line.text.strip() and line.size:
                sizes[round(line.size, 1)] += len(line.text.strip())
    if not sizes and not any(line.text.strip() for lines in page_lines for line in lines):
        raise ExtractionError(PDF_NO_TEXT, code="image_only")
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    # Distinct larger font sizes, biggest first, become heading levels 1..3.
    heading_sizes = sorted({size for size in sizes if body and size >= body * 1.15}, reverse=True)

    def heading_level(line: _PdfLine) -> int:
        size = round(line.size, 1)
        if size not in heading_sizes or len(line.text.strip()) > 150:
            return 0
        return min(heading_sizes.index(size) + 1, 3)

    for number, lines in enumerate(page_lines, start=1):
        _add_pdf_page(builder, lines, page=number, heading_level=heading_level, body=body)

    title = None
    try:
        title = (reader.metadata.title if reader.metadata else None) or None
    except Exception:
        title = None
    if title:
        title = re.sub(r"^Microsoft (Word|PowerPoint) - ", "", clean_text(str(title), single_line=True))
        if title.lower() in {"untitled", "unknown", "document"} or re.fullmatch(r"[\w\-. ]+\.\w{2,4}", title):
            title = None
    return title, {"pages": len(pages)}


def _add_pdf_page(builder: _Builder, lines: list[_PdfLine], *, page: int, heading_level: Any, body: float) -> None:
    """Group one page's lines into headings, list items and paragraphs by font size and vertical gaps."""
    meta = {"page": page}
    gaps = [
        a.y - b.y
        for a, b in zip(lines, lines[1:], strict=False)
        if a.y is not None and b.y is not None and a.y > b.y and a.text.strip() and b.text.strip()
    ]
    # Line spacing is the common small gap (a low quantile, since paragraph breaks inflate the median), bounded by
    # the usual 1.2x leading of the body font for pages where every line is its own paragraph.
    spacing = sorted(gaps)[len(gaps) // 4] if gaps else 0.0
    if body:
        spacing = min(spacing, body * 1.5) if spacing else body * 1.2
    spacing = spacing or 14.0
    group: list[_PdfLine] = []

    def flush() -> None:
        if not group:
            return
        level = heading_level(group[0])
        if level and all(heading_level(line) == level for line in group):
            builder.add("heading", _join_pdf_lines([line.text for line in group]), level=level, meta=meta)
            group.clear()
            return
        paragraph: list[str] = []
        item: list[str] | None = None
        for line in group:
            text = line.text.strip()
            if _LIST_MARKER.match(text):
                if paragraph:
                    builder.add("paragraph", _join_pdf_lines(paragraph), meta=meta)
                    paragraph = []
                if item:
                    builder.add("list_item", _join_pdf_lines(item), meta=meta)
                item = [re.sub(r"^(?:[-•●▪■◦‣∙–—*])\s+", "", text)]
            elif item is not None:
                item.append(text)
            else:
                paragraph.append(text)
        if paragraph:
            builder.add("paragraph", _join_pdf_lines(paragraph), meta=meta)
        if item:
            builder.add("list_item", _join_pdf_lines(item), meta=meta)
        group.clear()

    previous: _PdfLine | None = None
    for line in lines:
        if not line.text.strip():
            flush()
            previous = None
            continue
        if previous is not None:
            new_block = bool(heading_level(previous)) != bool(heading_level(line))
            if previous.y is not None and line.y is not None:
                gap = previous.y - line.y
                # A big step down is a paragraph break; a step up means the text moved to a new column or box.
                new_block = new_block or gap > spacing * 1.5 or gap < -spacing * 0.5
            if new_block:
                flush()
        group.append(line)
        previous = line
    flush()


# --------------------------------------------------------------------------------------------------------------------
# Office Open XML (DOCX, XLSX)


def _check_zip_size(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExtractionError(FILE_DAMAGED, code="damaged") from exc
    if total > MAX_UNZIPPED_BYTES:
        raise ExtractionError(TOO_MUCH_TEXT, code="too_much_text")


_DOCX_HEADING_STYLE = re.compile(r"^(?:heading|заголовок|sarlavha)\s*(\d)")
_DOCX_LIST_STYLE = re.compile(r"^(?:list|список|ro'yxat)")


def _docx_heading_level(paragraph: Any, style: str) -> int:
    if style == "title":
        return 1
    if match := _DOCX_HEADING_STYLE.match(style):
        return max(1, min(int(match.group(1)), 6))
    outline = paragraph._p.xpath("./w:pPr/w:outlineLvl/@w:val")
    if outline and outline[0].isdigit() and int(outline[0]) < 6:
        return int(outline[0]) + 1
    return 0


def _docx_list_level(paragraph: Any, style: str) -> int | None:
    if paragraph._p.xpath("./w:pPr/w:numPr"):
        ilvl = paragraph._p.xpath("./w:pPr/w:numPr/w:ilvl/@w:val")
        return int(ilvl[0]) if ilvl and ilvl[0].isdigit() else 0
    if _DOCX_LIST_STYLE.match(style):
        # Word's built-in "List Bullet 2", "List Number 3" ... carry their depth in the name.
        depth = re.search(r"(\d)$", style)
        return int(depth.group(1)) - 1 if depth else 0
    return None


def _docx_table_rows(table: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # A horizontally merged cell is reported once per grid column it spans; keep it once.
            if cell._tc is previous:
                continue
            previous = cell._tc
            cells.append("\n".join(p.text for p in cell.paragraphs))
        rows.append(cells)
    return rows


def _docx_blocks(container: Any, parent: Any) -> Iterator[Any]:
    """Body paragraphs and tables in order, including those inside content controls (``w:sdt``), which Word
    templates and cover pages wrap around text and which ``Document.iter_inner_content()`` skips."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in container.iterchildren():
        if child.tag == qn("w:p"):
            yield Paragraph(child, parent)
        elif child.tag == qn("w:tbl"):
            yield Table(child, parent)
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _docx_blocks(content, parent)


def _extract_docx(data: bytes, builder: _Builder) -> tuple[str | None, dict[str, Any]]:
    import docx
    from docx.text.paragraph import Paragraph

    _check_zip_size(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors ... for broken packages
        raise ExtractionError(DOCX_DAMAGED, code="damaged") from exc
    try:
        for item in _docx_blocks(document.element.body, document._body):
            if isinstance(item, Paragraph):
                text = item.text
                if not text.strip():
                    continue
                style = (item.style.name if item.style is not None else "") or ""
                style = style.strip().lower()
                if level := _docx_heading_level(item, style):
                    builder.add("heading", text, level=level)
                elif (depth := _docx_list_level(item, style)) is not None:
                    builder.add("list_item", text, level=depth)
                else:
                    builder.add("paragraph", text)
                continue
            rows = [row for row in _docx_table_rows(item) if any(cell.strip() for cell in row)]
            if len(rows) == 1 or all(len([c for c in row if c.strip()]) <= 1 for row in rows):
                # One-row or one-column tables are layout, not data: read them as paragraphs.
                for row in rows:
                    builder.add("paragraph", "\n".join(cell for cell in row if cell.strip()))
            else:
                _add_table(builder, rows)
        title = document.core_properties.title or None
    except ExtractionError:
        raise
    except Exception as exc:
        raise ExtractionError(DOCX_DAMAGED, code="damaged") from exc
    return title, {}


def _cell_text(value: Any) -> str:
    """A spreadsheet value as the text a person would read in the cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(" ", timespec="minutes")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _extract_xlsx(data: bytes, builder: _Builder) -> tuple[str | None, dict[str, Any]]:
    import openpyxl

    _check_zip_size(data)
    try:
        # read_only streams rows instead of building every cell object; data_only gives formulas' cached values.
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise ExtractionError(XLSX_DAMAGED, code="damaged") from exc
    sheets: list[str] = []
    try:
        worksheets = list(workbook.worksheets)
        for sheet in worksheets:
            rows: Iterator[Sequence[str]] = (
                [_cell_text(value) for value in row] for row in sheet.iter_rows(values_only=True)
            )
            before = len(builder.blocks)
            _add_table(builder, rows, sheet=sheet.title, heading=sheet.title if len(worksheets) > 1 else None)
            if len(builder.blocks) > before:
                sheets.append(sheet.title)
        title = workbook.properties.title or None
    except ExtractionError:
        raise
    except Exception as exc:
        raise ExtractionError(XLSX_DAMAGED, code="damaged") from exc
    finally:
        workbook.close()
    return title, {"sheets": sheets}


# --------------------------------------------------------------------------------------------------------------------
# CSV and text


def _extract_csv(data: bytes, builder: _Builder) -> tuple[str | None, dict[str, Any]]:
    decoded = _decode_text(data)
    if decoded is None:
        raise ExtractionError(ENCODING_UNSUPPORTED, code="encoding")
    text, encoding = decoded
    sample = [line for line in text[:65536].splitlines()[:50] if line.strip()]
    delimiter = _best_delimiter(sample)[0] or ","
    try:
        _add_table(builder, csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise ExtractionError(CSV_DAMAGED, code="damaged") from exc
    return None, {"encoding": encoding, "delimiter": delimiter}


def _extract_text(data: bytes, builder: _Builder) -> tuple[str | None, dict[str, Any]]:
    decoded = _decode_text(data)
    if decoded is None:
        raise ExtractionError(ENCODING_UNSUPPORTED, code="encoding")
    _add_text(builder, decoded[0])
    return None, {"encoding": decoded[1]}


def _title(explicit: str | None, blocks: Sequence[Block], filename: str | None) -> str:
    """The document's own title, else the first heading, else the file name, else the start of the text."""
    if explicit and clean_text(explicit, single_line=True):
        return clean_text(explicit, single_line=True)[:200]
    for block in blocks[:20]:
        if block.kind == "heading":
            return block.text[:200]
    if stem := _stem(filename):
        return stem[:200]
    if blocks:
        first = blocks[0].text.split("\n", 1)[0]
        return first if len(first) <= 80 else first[:79].rstrip() + "…"
    return ""


def format_megabytes(size: int) -> str:
    """A byte limit as the number of megabytes shown in messages: "20", "2.5", "0.5"."""
    megabytes = size / (1024 * 1024)
    if megabytes >= 10 or megabytes.is_integer():
        return f"{megabytes:.0f}"
    return f"{megabytes:.2g}"


def extract(
    data: bytes, filename: str | None, *, max_bytes: int, max_chars: int = DEFAULT_MAX_CHARS
) -> ExtractedDocument:
    """Extract the structured text of an uploaded file.

    Args:
        data: the file's bytes.
        filename: the name it was uploaded under, if any (a hint for text formats and for the title).
        max_bytes: largest accepted file size.
        max_chars: largest amount of extracted text accepted.

    Raises:
        ExtractionError: empty, too large, unsupported, encrypted, image-only or damaged files, or no text at all.
    """
    if not data:
        raise ExtractionError(EMPTY_FILE, code="empty")
    if len(data) > max_bytes:
        raise ExtractionError(FILE_TOO_LARGE, code="too_large", params={"max_mb": format_megabytes(max_bytes)})
    kind = detect_kind(data, filename)
    if kind == "html":
        decoded = _decode_text(data)
        document = extract_html(decoded[0] if decoded else "", "", max_chars=max_chars)
        if not document.title and (stem := _stem(filename)):
            document.title = stem
    else:
        builder = _Builder(max_chars)
        handlers = {
            "pdf": _extract_pdf,
            "docx": _extract_docx,
            "xlsx": _extract_xlsx,
            "csv": _extract_csv,
            "text": _extract_text,
        }
        explicit, meta = handlers[kind](data, builder)
        document = ExtractedDocument(
            title=_title(explicit, builder.blocks, filename), kind=kind, blocks=builder.blocks, meta=meta
        )
    if not document.blocks:
        raise ExtractionError(NO_TEXT, code="no_text")
    return document


# --------------------------------------------------------------------------------------------------------------------
# HTML


_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_SKIP_TAGS = {
    "script", "style", "noscript", "template", "svg", "math", "head", "iframe", "object", "embed", "canvas",
    "button", "select", "option", "input", "textarea", "video", "audio", "picture", "map",
}  # fmt: skip
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "center", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "html", "main", "nav", "p", "pre",
    "section", "summary", "caption", "hr", "legend", "menu",
}  # fmt: skip


def _tag(element: Any) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


class _HtmlWalker:
    """A plain HTML-to-blocks reader for pages the main-text extractor gives up on (short or unusual pages)."""

    def __init__(self, builder: _Builder) -> None:
        self.builder = builder
        self.inline: list[str] = []
        self.depth = 0

    def flush(self) -> None:
        text = "".join(self.inline)
        self.inline.clear()
        for paragraph in re.split(r"\n\s*\n", text):
            self.builder.add("paragraph", paragraph)

    def text_of(self, element: Any, *, skip: frozenset[str] = frozenset()) -> str:
        parts = [element.text or ""]
        for child in element:
            tag = _tag(child)
            if tag == "br":
                parts.append("\n")
            elif tag and tag not in _SKIP_TAGS and tag not in skip:
                parts.append(self.text_of(child, skip=skip))
            parts.append(child.tail or "")
        return "".join(parts)

    def walk(self, element: Any) -> None:
        tag = _tag(element)
        if not tag or tag in _SKIP_TAGS:
            pass
        elif tag in _HEADING_TAGS:
            self.flush()
            self.builder.add("heading", self.text_of(element), level=_HEADING_TAGS[tag])
        elif tag in ("ul", "ol"):
            self.flush()
            self.depth += 1
            for child in element:
                self.walk(child)
            self.depth -= 1
        elif tag == "li":
            self.flush()
            self.builder.add(
                "list_item", self.text_of(element, skip=frozenset({"ul", "ol"})), level=max(self.depth - 1, 0)
            )
            for child in element:
                if _tag(child) in ("ul", "ol"):
                    self.walk(child)
        elif tag == "table":
            self.flush()
            rows = [
                [self.text_of(cell) for cell in row if _tag(cell) in ("td", "th")]
                for row in element.iter()
                if _tag(row) == "tr"
            ]
            _add_table(self.builder, rows)
        elif tag == "br":
            self.inline.append("\n")
        elif tag in _BLOCK_TAGS:
            self.flush()
            self.inline.append(element.text or "")
            for child in element:
                self.walk(child)
            self.flush()
        else:
            self.inline.append(element.text or "")
            for child in element:
                self.walk(child)
        if element.tail:
            self.inline.append(element.tail)


def _xml_text(node: Any, skip: tuple[str, ...] = ()) -> str:
    parts = [node.text or ""]
    for child in node:
        tag = _tag(child)
        if tag == "lb":
            parts.append("\n")
        elif tag and tag not in skip:
            parts.append(_xml_text(child, skip))
        parts.append(child.tail or "")
    return "".join(parts)


def _add_trafilatura_list(builder: _Builder, element: Any, depth: int) -> None:
    for item in element:
        if _tag(item) != "item":
            continue
        builder.add("list_item", _xml_text(item, ("list",)), level=depth)
        for nested in item:
            if _tag(nested) == "list":
                _add_trafilatura_list(builder, nested, depth + 1)


def _add_trafilatura_xml(builder: _Builder, element: Any) -> None:
    """Turn trafilatura's XML (head, p, list/item, table/row/cell, quote, code) into blocks."""
    for child in element:
        tag = _tag(child)
        if tag == "head":
            rend = (child.get("rend") or "h2").lower()
            level = int(rend[1]) if len(rend) == 2 and rend[0] == "h" and rend[1].isdigit() else 2
            builder.add("heading", _xml_text(child), level=level)
        elif tag == "list":
            _add_trafilatura_list(builder, child, 0)
        elif tag == "table":
            rows = [
                [_xml_text(cell) for cell in row if _tag(cell) == "cell"] for row in child.iter() if _tag(row) == "row"
            ]
            _add_table(builder, rows)
        elif tag in ("quote", "div") and any(_tag(node) in ("list", "table", "head", "p") for node in child):
            _add_trafilatura_xml(builder, child)
        elif tag:
            builder.add("paragraph", _xml_text(child))


@functools.cache
def _trafilatura_config() -> Any:
    from trafilatura.settings import use_config

    config = use_config()
    # By default a main text under 250 characters is thrown away for a flattened copy of the whole page (menus
    # included, structure lost). A contact or price page of a small shop is often that short, and its headings and
    # table rows matter more than its length.
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "10")
    return config


def extract_html(html: str, url: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> ExtractedDocument:
    """Extract a web page's main text (trafilatura), keeping headings, lists and tables as blocks.

    Navigation, footers and boilerplate are dropped by trafilatura; when it finds nothing (very short or unusual
    pages) a plain reader of the whole page takes over. A page with no text gives a document with no blocks.
    """
    import trafilatura
    from lxml import etree
    from lxml import html as lxml_html

    builder = _Builder(max_chars)
    title = ""
    root = None
    if html.strip():
        try:
            xml = trafilatura.extract(
                html,
                url=url or None,
                output_format="xml",
                include_tables=True,
                include_comments=False,
                include_images=False,
                include_links=False,
                with_metadata=True,
                config=_trafilatura_config(),
                favor_recall=True,  # a knowledge base would rather keep a contact line than lose it as boilerplate
            )
        except Exception:
            log.warning("knowledge.html.extractor_failed", extra={"url": url}, exc_info=True)
            xml = None
        if xml:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
            root = etree.fromstring(xml.encode("utf-8"), parser=parser)
        if root is not None:
            title = root.get("title") or ""
            main = next((node for node in root if _tag(node) == "main"), None)
            if main is not None:
                _add_trafilatura_xml(builder, main)
        page = None
        if not builder.blocks or not title:
            try:
                page = lxml_html.document_fromstring(
                    html.encode("utf-8"), parser=lxml_html.HTMLParser(encoding="utf-8", remove_comments=True)
                )
            except (etree.ParserError, ValueError):
                page = None
        if page is not None:
            if not title:
                found = page.find(".//title")
                title = found.text_content() if found is not None else ""
            if not builder.blocks:
                walker = _HtmlWalker(builder)
                body = page.find(".//body")
                walker.walk(body if body is not None else page)
                walker.flush()
    title = clean_text(title, single_line=True)[:200] or _title(None, builder.blocks, None)
    if not title and url:
        title = url
    meta = {"url": url} if url else {}
    return ExtractedDocument(title=title, kind="html", blocks=builder.blocks, meta=meta)
