"""Structure-aware chunking: headings, paragraphs and lists packed per section; a Q&A pair or a table row stays whole.

Chunks are what retrieval ranks and what answers quote, so each one carries its source, its heading path as title,
its position in the source and the language it is written in. Table rows repeat their header ("price: 120000"),
so a row found on its own still says what each value means.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot_runtime.answering.langdetect import detect_language
from bot_runtime.answering.text import iter_sentences

DEFAULT_MAX_CHARS = 700


class ChunkKind(StrEnum):
    """What a chunk holds: running text, one Q&A pair, or one table row."""

    TEXT = "text"
    FAQ = "faq"
    ROW = "row"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable passage. For FAQ chunks ``question`` holds the question and ``text`` = question + answer."""

    source_id: str
    title: str
    position: int
    text: str
    kind: ChunkKind = ChunkKind.TEXT
    language: str | None = None
    question: str = ""

    @property
    def chunk_id(self) -> str:
        """Stable id of the chunk within its bot: ``source_id#position``."""
        return f"{self.source_id}#{self.position}"

    @property
    def answer(self) -> str:
        """The answer part of a FAQ chunk, or the whole text for other kinds."""
        if self.kind is ChunkKind.FAQ and self.question and self.text.startswith(self.question):
            return self.text[len(self.question) :].strip()
        return self.text


_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SETEXT_RE = re.compile(r"^(=+|-+)\s*$")
_LIST_RE = re.compile(r"^\s*(?:[-*•·–]|\d{1,3}[.)])\s+")
_TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_QUESTION_LABEL = re.compile(r"^\s*(?:q|question|savol|савол|вопрос|в)\s*[:.)-]\s*(.*)$", re.IGNORECASE)
_ANSWER_LABEL = re.compile(r"^\s*(?:a|answer|javob|жавоб|ответ|о)\s*[:.)-]\s*(.*)$", re.IGNORECASE)
_FAQ_HEADERS = {
    ("question", "answer"),
    ("savol", "javob"),
    ("савол", "жавоб"),
    ("вопрос", "ответ"),
    ("q", "a"),
}


@dataclass(slots=True)
class _Block:
    kind: str  # "para" | "list" | "faq" | "table"
    lines: list[str]
    heading: tuple[str, ...]
    question: str = ""


def chunk_document(
    text: str,
    *,
    source_id: str,
    title: str = "",
    language: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[Chunk]:
    """Split a plain-text or Markdown document into chunks that follow its structure.

    Paragraphs and lists under one heading are packed together up to ``max_chars``; a longer paragraph is split
    between sentences. "Q:/A:" (also Savol/Javob, Вопрос/Ответ) pairs and Markdown table rows become one chunk each.
    """
    builder = _ChunkBuilder(source_id=source_id, doc_title=title, language=language)
    section: list[_Block] = []
    for block in _blocks(text):
        if section and block.heading != section[0].heading:
            builder.add_section(section, max_chars)
            section = []
        if block.kind == "faq":
            builder.add_section(section, max_chars)
            section = []
            builder.add_faq(block.question, "\n".join(block.lines), heading=block.heading)
        elif block.kind == "table":
            builder.add_section(section, max_chars)
            section = []
            rows = [_split_table_line(line) for line in block.lines if not _TABLE_SEP_RE.match(line)]
            if rows:
                builder.add_rows(rows[0], rows[1:], heading=block.heading)
        else:
            section.append(block)
    builder.add_section(section, max_chars)
    return builder.chunks


def chunk_faq(
    pairs: Iterable[tuple[str, str]], *, source_id: str, title: str = "", language: str | None = None
) -> list[Chunk]:
    """One chunk per (question, answer) pair; empty pairs are skipped."""
    builder = _ChunkBuilder(source_id=source_id, doc_title=title, language=language)
    for question, answer in pairs:
        if question.strip() and answer.strip():
            builder.add_faq(question.strip(), answer.strip(), heading=())
    return builder.chunks


def chunk_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    source_id: str,
    title: str = "",
    language: str | None = None,
) -> list[Chunk]:
    """One chunk per table row, each value labelled with its column header.

    A two-column table headed question/answer (in any of the three languages) is read as Q&A pairs instead.
    """
    builder = _ChunkBuilder(source_id=source_id, doc_title=title, language=language)
    builder.add_rows(list(header), [list(row) for row in rows], heading=())
    return builder.chunks


def read_csv(data: bytes | str) -> tuple[list[str], list[list[str]]]:
    """Parse a CSV price list or catalogue in UTF-8 (with or without BOM) or cp1251, comma- or semicolon-separated.

    Returns the header and the non-empty rows.
    """
    if isinstance(data, bytes):
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            content = data.decode("cp1251")
    else:
        content = data.lstrip("\ufeff")
    first_line = content.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    if "\t" in first_line and first_line.count("\t") > first_line.count(delimiter):
        delimiter = "\t"
    reader = csv.reader(io.StringIO(content), delimiter=delimiter)
    rows = [[cell.strip() for cell in row] for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        return [], []
    return rows[0], rows[1:]


def chunk_csv(data: bytes | str, *, source_id: str, title: str = "", language: str | None = None) -> list[Chunk]:
    """Read a CSV file (see :func:`read_csv`) and chunk it with :func:`chunk_table`."""
    header, rows = read_csv(data)
    if not header:
        return []
    return chunk_table(header, rows, source_id=source_id, title=title, language=language)


class _ChunkBuilder:
    def __init__(self, *, source_id: str, doc_title: str, language: str | None) -> None:
        self.source_id = source_id
        self.doc_title = doc_title
        self.language = language
        self.chunks: list[Chunk] = []

    def _title(self, heading: tuple[str, ...]) -> str:
        parts = [self.doc_title] if self.doc_title and (not heading or heading[0] != self.doc_title) else []
        return " › ".join([*parts, *heading])

    def _emit(self, text: str, *, heading: tuple[str, ...], kind: ChunkKind, question: str = "") -> None:
        text = text.strip()
        if not text:
            return
        language = detect_language(text, hint=self.language) if kind is not ChunkKind.ROW else self.language
        self.chunks.append(
            Chunk(
                source_id=self.source_id,
                title=self._title(heading),
                position=len(self.chunks),
                text=text,
                kind=kind,
                language=language,
                question=question,
            )
        )

    def add_faq(self, question: str, answer: str, *, heading: tuple[str, ...]) -> None:
        question = question.strip()
        self._emit(f"{question}\n{answer.strip()}", heading=heading, kind=ChunkKind.FAQ, question=question)

    def add_rows(self, header: list[str], rows: list[list[str]], *, heading: tuple[str, ...]) -> None:
        labels = [h.strip() for h in header]
        if len(labels) >= 2 and (labels[0].casefold(), labels[1].casefold()) in _FAQ_HEADERS:
            for row in rows:
                if len(row) >= 2 and row[0].strip() and row[1].strip():
                    self.add_faq(row[0], row[1], heading=heading)
            return
        for row in rows:
            cells = [
                f"{label}: {value.strip()}" if label else value.strip()
                for label, value in zip(labels, row, strict=False)
                if value.strip()
            ]
            cells.extend(value.strip() for value in row[len(labels) :] if value.strip())
            if cells:
                self._emit("\n".join(cells), heading=heading, kind=ChunkKind.ROW)

    def add_section(self, blocks: list[_Block], max_chars: int) -> None:
        if not blocks:
            return
        heading = blocks[0].heading
        buffer: list[str] = []
        size = 0
        for piece in _pieces(blocks, max_chars):
            if buffer and size + len(piece) > max_chars:
                self._emit("\n\n".join(buffer), heading=heading, kind=ChunkKind.TEXT)
                buffer, size = [], 0
            buffer.append(piece)
            size += len(piece) + 2
        if buffer:
            self._emit("\n\n".join(buffer), heading=heading, kind=ChunkKind.TEXT)


def _pieces(blocks: list[_Block], max_chars: int) -> Iterable[str]:
    """Blocks as strings, long paragraphs cut between sentences and long lists between items."""
    for block in blocks:
        text = "\n".join(block.lines).strip()
        if len(text) <= max_chars:
            yield text
            continue
        units = block.lines if block.kind == "list" else list(iter_sentences(text))
        current: list[str] = []
        size = 0
        joiner = "\n" if block.kind == "list" else " "
        for unit in units:
            if current and size + len(unit) > max_chars:
                yield joiner.join(current)
                current, size = [], 0
            current.append(unit)
            size += len(unit) + 1
        if current:
            yield joiner.join(current)


def _blocks(text: str) -> list[_Block]:
    """Parse lines into paragraph, list, FAQ and table blocks, each tagged with its heading path."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[_Block] = []
    headings: list[tuple[int, str]] = []
    current: _Block | None = None

    def heading_path() -> tuple[str, ...]:
        return tuple(title for _, title in headings)

    def close() -> None:
        nonlocal current
        if current is not None and any(line.strip() for line in current.lines):
            blocks.append(_finish(current))
        current = None

    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        heading = _HEADING_RE.match(stripped)
        setext = (
            i + 1 < len(lines)
            and stripped
            and not _LIST_RE.match(stripped)
            and _SETEXT_RE.match(lines[i + 1].strip())
            and (current is None or not current.lines)
        )
        if heading or setext:
            close()
            level = len(heading.group(1)) if heading else (1 if lines[i + 1].strip().startswith("=") else 2)
            title = heading.group(2) if heading else stripped
            headings = [(lvl, t) for lvl, t in headings if lvl < level] + [(level, title.strip("*_ "))]
            i += 1 if heading else 2
            continue
        if not stripped:
            # A Q&A pair may have a blank line between question and answer; anything else ends the block.
            if current is not None and current.kind == "faq" and not current.lines:
                i += 1
                continue
            close()
            i += 1
            continue
        question = _QUESTION_LABEL.match(stripped)
        if question and question.group(1):
            close()
            current = _Block("faq", [], heading_path(), question=question.group(1).strip())
            i += 1
            continue
        if current is not None and current.kind == "faq":
            answer = _ANSWER_LABEL.match(stripped)
            if not current.lines and answer:
                current.lines.append(answer.group(1).strip())
            elif not current.lines:
                current.question = f"{current.question} {stripped}"
            else:
                current.lines.append(stripped)
            i += 1
            continue
        kind = "table" if stripped.startswith("|") else "list" if _LIST_RE.match(stripped) else "para"
        if current is not None and current.kind != kind and not (current.kind == "list" and kind == "para"):
            close()
        if current is None:
            current = _Block(kind, [], heading_path())
        current.lines.append(stripped if kind != "para" or current.kind != "list" else "  " + stripped)
        i += 1
    close()
    return blocks


def _finish(block: _Block) -> _Block:
    """A paragraph whose first line is a question and that goes on with an answer is a Q&A pair too."""
    if block.kind == "para" and len(block.lines) > 1:
        first = block.lines[0].strip("*_ ")
        if first.endswith("?") and len(first) <= 200:
            return _Block("faq", [line.strip() for line in block.lines[1:]], block.heading, question=first)
    if block.kind == "faq" and not block.lines:
        return _Block("para", [block.question], block.heading)
    return block


def _split_table_line(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]
