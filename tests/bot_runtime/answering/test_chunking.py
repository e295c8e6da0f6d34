"""Structure-aware chunking keeps Q&A pairs and table rows whole."""

from __future__ import annotations

from bot_runtime.answering.chunking import ChunkKind, chunk_csv, chunk_document, chunk_faq, chunk_table, read_csv

DOC = """# Shop

Intro paragraph about the shop.

## Delivery

We deliver in the city.
Second line of the same paragraph.

- Item one
- Item two

Q: Do you deliver on Sunday?
A: Yes, from 10:00 to 17:00.
Only in the city.

Вопрос: Есть ли рассрочка?

Ответ: Да, на 6 месяцев.

| SKU | Name | Price |
|-----|------|-------|
| AB-1 | Chair | 450000 |
| AB-2 | Table | 900000 |

Can I pick it up myself?
Yes, from our warehouse.
"""


def test_document_structure_becomes_chunks() -> None:
    chunks = chunk_document(DOC, source_id="doc", language="en")
    kinds = [c.kind for c in chunks]
    assert kinds == [
        ChunkKind.TEXT,
        ChunkKind.TEXT,
        ChunkKind.FAQ,
        ChunkKind.FAQ,
        ChunkKind.ROW,
        ChunkKind.ROW,
        ChunkKind.FAQ,
    ]
    assert chunks[0].title == "Shop" and chunks[1].title == "Shop › Delivery"
    assert "Item two" in chunks[1].text and "Second line" in chunks[1].text
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(c.source_id == "doc" for c in chunks)


def test_qa_pairs_stay_whole() -> None:
    chunks = chunk_document(DOC, source_id="doc", language="en")
    sunday, installment, pickup = (c for c in chunks if c.kind is ChunkKind.FAQ)
    assert sunday.question == "Do you deliver on Sunday?"
    assert sunday.answer == "Yes, from 10:00 to 17:00.\nOnly in the city."
    assert installment.question == "Есть ли рассрочка?" and installment.answer == "Да, на 6 месяцев."
    assert installment.language == "ru"
    assert pickup.question == "Can I pick it up myself?" and pickup.answer == "Yes, from our warehouse."


def test_table_rows_carry_their_header() -> None:
    rows = [c for c in chunk_document(DOC, source_id="doc") if c.kind is ChunkKind.ROW]
    assert rows[0].text == "SKU: AB-1\nName: Chair\nPrice: 450000"
    assert rows[1].text == "SKU: AB-2\nName: Table\nPrice: 900000"


def test_csv_in_cp1251_with_semicolons() -> None:
    data = "Артикул;Наименование;Цена\nDV-1;Диван прямой;4500000\n\n;;\nKR-2;Кровать;3900000\n".encode("cp1251")
    header, rows = read_csv(data)
    assert header == ["Артикул", "Наименование", "Цена"] and len(rows) == 2
    chunks = chunk_csv(data, source_id="prices.csv", title="Прайс")
    assert [c.kind for c in chunks] == [ChunkKind.ROW, ChunkKind.ROW]
    assert chunks[0].text == "Артикул: DV-1\nНаименование: Диван прямой\nЦена: 4500000"
    assert chunks[1].title == "Прайс"


def test_question_answer_csv_becomes_faq() -> None:
    chunks = chunk_csv('\ufeffquestion,answer\n"Do you deliver?","Yes, free, within the city."\n', source_id="f")
    assert len(chunks) == 1 and chunks[0].kind is ChunkKind.FAQ
    assert chunks[0].answer == "Yes, free, within the city."
    savol = chunk_table(["Savol", "Javob"], [["Kafolat bormi?", "Ha, 18 oy."]], source_id="s")
    assert savol[0].kind is ChunkKind.FAQ and savol[0].question == "Kafolat bormi?"


def test_faq_pairs_and_long_paragraphs() -> None:
    faq = chunk_faq([("Q1?", "A1"), ("", "skipped"), ("Q2?", "A2")], source_id="faq", language="en")
    assert [c.question for c in faq] == ["Q1?", "Q2?"]
    long_text = " ".join(f"Sentence number {i} talks about delivery." for i in range(60))
    chunks = chunk_document(long_text, source_id="long", max_chars=300)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)  # cut between sentences, never inside one
