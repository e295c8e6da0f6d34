"""Splitting long answers and rendering them as Telegram HTML (checked with the fake's real-wording HTML parser)."""

from __future__ import annotations

from bot_runtime.channels.telegram import render_parts, split_text, to_html, utf16_len
from tests.fakes.telegram_api import parse_html


def test_short_text_is_one_piece() -> None:
    assert split_text("  Hello  ") == ["Hello"]
    assert split_text("") == []


def test_split_prefers_paragraphs_then_sentences_then_spaces() -> None:
    paragraph = "A" * 60
    assert split_text(f"{paragraph}\n\n{paragraph}", limit=100) == [paragraph, paragraph]
    sentences = "First sentence is here. Second one follows it. Third closes."
    assert split_text(sentences, limit=50) == ["First sentence is here. Second one follows it.", "Third closes."]
    words = "word " * 30
    pieces = split_text(words, limit=40)
    assert all(len(p) <= 40 and not p.startswith(" ") for p in pieces)
    assert " ".join(pieces).split() == words.split()
    assert split_text("x" * 250, limit=100) == ["x" * 100, "x" * 100, "x" * 50]


def test_split_counts_utf16_units() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units
    pieces = split_text(text)
    assert all(utf16_len(p) <= 4096 for p in pieces)
    assert "".join(pieces) == text


def test_html_escapes_everything_and_converts_a_little_markdown() -> None:
    rendered = to_html("**Price** <b>5</b> & `x<y` then ```\nif a < b:\n    pass\n``` done **")
    text, entities = parse_html(rendered)  # raises like Telegram would on bad markup
    assert text == "Price <b>5</b> & x<y then if a < b:\n    pass done **"
    assert [e["type"] for e in entities] == ["bold", "code", "pre"]


def test_render_parts_keeps_every_part_valid() -> None:
    text = ("**bold** <tag> " * 400).strip()
    for plain, markup in render_parts(text):
        parsed, _ = parse_html(markup)
        assert len(parsed) <= 4096
        assert parsed == plain.replace("**", "")
