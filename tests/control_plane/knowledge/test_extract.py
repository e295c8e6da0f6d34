"""Extraction from real files built in the tests: PDF (text, encrypted, image-only, truncated), DOCX, XLSX, CSV in
cp1251 and UTF-8 with BOM, Markdown, HTML, and files that lie about their type."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import AsyncIterator, Sequence
from datetime import date

import docx
import openpyxl
import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, NumberObject

from control_plane.knowledge import extract as extract_module
from control_plane.knowledge.extract import (
    EMPTY_FILE,
    FILE_TOO_LARGE,
    LEGACY_OFFICE,
    NOT_REAL_FORMAT,
    PDF_DAMAGED,
    PDF_ENCRYPTED,
    PDF_NO_TEXT,
    UNSUPPORTED_TYPE,
    Block,
    ExtractedDocument,
    ExtractionError,
    content_hash,
    decode_html,
    detect_kind,
    extract,
    extract_html,
)

MB = 1024 * 1024


@pytest.fixture(autouse=True)
async def clean_slate() -> AsyncIterator[None]:
    """Overrides the suite-wide database/Redis wipe: extraction touches neither."""
    yield


# --------------------------------------------------------------------------------------------------------------------
# File builders


Line = str | tuple[str, float]  # text, or (text, font size); "" is an empty line (a paragraph gap)


def make_pdf(
    pages: Sequence[Sequence[Line]],
    *,
    user_password: str | None = None,
    owner_password: str | None = None,
    title: str | None = None,
    image_only: bool = False,
) -> bytes:
    """A real PDF whose pages draw the given lines with Helvetica, top to bottom, one content stream per page."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )
    )
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        if image_only:
            # A 2x2 grey image stretched over the page: what a scanner produces, with no text operators at all.
            image = DecodedStreamObject()
            image.set_data(b"\x00\x80\x80\xff")
            image.update(
                {
                    NameObject("/Type"): NameObject("/XObject"),
                    NameObject("/Subtype"): NameObject("/Image"),
                    NameObject("/Width"): NumberObject(2),
                    NameObject("/Height"): NumberObject(2),
                    NameObject("/ColorSpace"): NameObject("/DeviceGray"),
                    NameObject("/BitsPerComponent"): NumberObject(8),
                }
            )
            resources[NameObject("/XObject")] = DictionaryObject({NameObject("/Im1"): writer._add_object(image)})
            operations = ["q 400 0 0 500 100 150 cm /Im1 Do Q"]
        else:
            operations = ["BT", "72 740 Td"]
            for line in lines:
                text, size = (line, 12.0) if isinstance(line, str) else line
                escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                operations += [f"/F1 {size:g} Tf", f"0 -{size * 1.25:g} Td", f"({escaped}) Tj"]
            operations.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(operations).encode("cp1252"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = resources
    if title:
        writer.add_metadata({"/Title": title})
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_docx() -> bytes:
    document = docx.Document()
    document.core_properties.title = "Acme handbook"
    document.add_heading("Opening hours", level=1)
    document.add_paragraph("We are open every day from 9:00 to 18:00, except public holidays.")
    document.add_heading("Delivery", level=2)
    document.add_paragraph("Free delivery in Tashkent", style="List Bullet")
    document.add_paragraph("Orders before noon ship the same day", style="List Bullet 2")
    document.add_paragraph("Regions: 3 to 5 days", style="List Bullet")
    document.add_paragraph("Place the order", style="List Number")
    table = document.add_table(rows=3, cols=3)
    values = [("Item", "Size", "Price"), ("Green tea", "100 g", "45 000"), ("Black tea", "250 g", "60 000")]
    for row, row_values in zip(table.rows, values, strict=True):
        for cell, value in zip(row.cells, row_values, strict=True):
            cell.text = value
    layout = document.add_table(rows=1, cols=2)
    layout.rows[0].cells[0].text = "Acme Tea LLC"
    layout.rows[0].cells[1].text = "Tashkent, Amir Temur 1"
    faq = document.add_table(rows=2, cols=2)
    faq.rows[0].cells[0].text = "Savol"
    faq.rows[0].cells[1].text = "Javob"
    faq.rows[1].cells[0].text = "Yetkazib berish bepulmi?"
    faq.rows[1].cells[1].text = "Ha, Toshkent bo'ylab bepul."
    document.add_paragraph("Thank you for choosing us.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_xlsx() -> bytes:
    workbook = openpyxl.Workbook()
    prices = workbook.active
    prices.title = "Prices"
    prices.append([])  # a blank first row: the header is the first NON-empty row
    prices.append(["SKU", "Item", "Price", "Weight, kg", "In stock since"])
    prices.append(["GT-100", "Green tea", 45000, 0.1, date(2024, 3, 1)])
    prices.append(["BT-250", "Black tea", 60000.0, 0.25, None])
    prices.append([None, None, None])  # an empty row in the middle is skipped
    prices.append(["HB-050", "Herbal mix", 38500, 12.5, None])
    faq = workbook.create_sheet("FAQ")
    faq.append(["Вопрос", "Ответ"])
    faq.append(["Есть ли доставка?", "Да, по всему Узбекистану."])
    faq.append(["Можно оплатить картой?", "Да, Uzcard и Humo."])
    workbook.create_sheet("Empty")
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def kinds(document: ExtractedDocument) -> list[str]:
    return [block.kind for block in document.blocks]


def error_of(data: bytes, filename: str | None, **kwargs: int) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract(data, filename, max_bytes=kwargs.pop("max_bytes", 10 * MB), **kwargs)
    return caught.value


# --------------------------------------------------------------------------------------------------------------------
# PDF


def test_pdf_headings_paragraphs_lists_and_pages() -> None:
    data = make_pdf(
        [
            [
                ("Opening hours", 20),
                "",
                "We are open from 9 to 18 every day ex-",
                "cept Sunday. Call us any time at all.",
                "",
                "- Delivery is free in Tashkent",
                "- Returns within 14 days",
            ],
            [("Delivery", 20), "", "Couriers deliver to every region of Uzbekistan."],
        ],
        title="Acme handbook",
    )

    document = extract(data, "handbook.pdf", max_bytes=MB)

    assert document.kind == "pdf"
    assert document.title == "Acme handbook"
    assert document.meta == {"pages": 2}
    assert [(b.kind, b.text, b.level, b.meta) for b in document.blocks] == [
        ("heading", "Opening hours", 1, {"page": 1}),
        ("paragraph", "We are open from 9 to 18 every day except Sunday. Call us any time at all.", 0, {"page": 1}),
        ("list_item", "Delivery is free in Tashkent", 0, {"page": 1}),
        ("list_item", "Returns within 14 days", 0, {"page": 1}),
        ("heading", "Delivery", 1, {"page": 2}),
        ("paragraph", "Couriers deliver to every region of Uzbekistan.", 0, {"page": 2}),
    ]


def test_pdf_title_falls_back_to_first_heading() -> None:
    document = extract(make_pdf([[("Price list", 18), "", "Green tea costs 45 000 so'm."]]), "x.pdf", max_bytes=MB)
    assert document.title == "Price list"


def test_encrypted_pdf_is_refused_with_a_clear_error() -> None:
    error = error_of(make_pdf([["Secret prices"]], user_password="s3cret", owner_password="owner"), "prices.pdf")
    assert (error.code, error.message) == ("encrypted", PDF_ENCRYPTED)


def test_pdf_with_only_an_owner_password_still_opens() -> None:
    # Copy/print restrictions set an owner password; the empty user password opens the file for reading.
    data = make_pdf([["Readable despite restrictions."]], user_password="", owner_password="owner")
    assert extract(data, "restricted.pdf", max_bytes=MB).blocks[0].text == "Readable despite restrictions."


def test_image_only_pdf_is_refused_as_scanned() -> None:
    error = error_of(make_pdf([[], []], image_only=True), "scan.pdf")
    assert (error.code, error.message) == ("image_only", PDF_NO_TEXT)


def test_pdf_with_blank_pages_has_no_text() -> None:
    assert error_of(make_pdf([[]]), "blank.pdf").code == "image_only"


def test_truncated_pdf_is_damaged() -> None:
    data = make_pdf([["Opening hours are 9 to 18."]])
    error = error_of(data[: len(data) // 2], "cut.pdf")
    assert (error.code, error.message) == ("damaged", PDF_DAMAGED)


def test_random_bytes_named_pdf_are_not_a_pdf() -> None:
    error = error_of(os.urandom(4096), "invoice.pdf")
    assert (error.code, error.message, error.params) == ("damaged", NOT_REAL_FORMAT, {"format": "PDF"})
    assert str(error) == "This file is damaged or is not a real PDF file."


def test_random_bytes_without_a_known_name_are_unsupported() -> None:
    error = error_of(os.urandom(4096), "blob.bin")
    assert (error.code, error.message) == ("unsupported_type", UNSUPPORTED_TYPE)


# --------------------------------------------------------------------------------------------------------------------
# DOCX


def test_docx_headings_lists_tables_and_qa() -> None:
    document = extract(make_docx(), "handbook.docx", max_bytes=MB)

    assert document.kind == "docx"
    assert document.title == "Acme handbook"
    blocks = [(b.kind, b.text, b.level) for b in document.blocks]
    assert blocks[:7] == [
        ("heading", "Opening hours", 1),
        ("paragraph", "We are open every day from 9:00 to 18:00, except public holidays.", 0),
        ("heading", "Delivery", 2),
        ("list_item", "Free delivery in Tashkent", 0),
        ("list_item", "Orders before noon ship the same day", 1),
        ("list_item", "Regions: 3 to 5 days", 0),
        ("list_item", "Place the order", 0),
    ]
    rows = [b for b in document.blocks if b.kind == "table_row"]
    assert [b.text for b in rows] == [
        "Item: Green tea; Size: 100 g; Price: 45 000",
        "Item: Black tea; Size: 250 g; Price: 60 000",
    ]
    assert rows[0].meta == {"header": ["Item", "Size", "Price"], "row": ["Green tea", "100 g", "45 000"]}
    # A one-row table is page layout, read as text rather than as a header without rows.
    assert ("paragraph", "Acme Tea LLC\nTashkent, Amir Temur 1", 0) in blocks
    (qa,) = [b for b in document.blocks if b.kind == "qa"]
    assert qa.meta == {"question": "Yetkazib berish bepulmi?", "answer": "Ha, Toshkent bo'ylab bepul."}
    assert blocks[-1] == ("paragraph", "Thank you for choosing us.", 0)


def test_docx_text_inside_content_controls_is_read() -> None:
    from docx.oxml import OxmlElement

    document = docx.Document()
    document.add_paragraph("Before the control.")
    wrapped = document.add_paragraph("Inside a content control, as Word templates do it.")
    document.add_paragraph("After the control.")
    sdt, content = OxmlElement("w:sdt"), OxmlElement("w:sdtContent")
    wrapped._p.addprevious(sdt)
    sdt.append(content)
    content.append(wrapped._p)
    buffer = io.BytesIO()
    document.save(buffer)

    result = extract(buffer.getvalue(), "template.docx", max_bytes=MB)

    assert [b.text for b in result.blocks] == [
        "Before the control.",
        "Inside a content control, as Word templates do it.",
        "After the control.",
    ]


def test_text_file_named_docx_is_refused() -> None:
    error = error_of(b"Just some notes, saved with the wrong name.\n", "notes.docx")
    assert (error.code, error.message, error.params) == ("damaged", NOT_REAL_FORMAT, {"format": "DOCX"})


def test_truncated_docx_is_damaged() -> None:
    data = make_docx()
    assert error_of(data[: len(data) // 2], "handbook.docx").code == "damaged"


def test_docx_with_a_broken_document_part_is_damaged() -> None:
    source = zipfile.ZipFile(io.BytesIO(make_docx()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, b"<w:document>not xml" if item.filename == "word/document.xml" else data)
    assert error_of(buffer.getvalue(), "handbook.docx").code == "damaged"


# --------------------------------------------------------------------------------------------------------------------
# XLSX


def test_xlsx_price_list_rows_keep_their_header() -> None:
    document = extract(make_xlsx(), "catalogue.xlsx", max_bytes=MB)

    assert document.kind == "xlsx"
    assert document.meta == {"sheets": ["Prices", "FAQ"]}
    assert kinds(document) == ["heading", "table_row", "table_row", "table_row", "heading", "qa", "qa"]
    header = ["SKU", "Item", "Price", "Weight, kg", "In stock since"]
    green, black, herbal = document.blocks[1:4]
    assert green.text == "SKU: GT-100; Item: Green tea; Price: 45000; Weight, kg: 0.1; In stock since: 2024-03-01"
    assert green.meta == {
        "header": header,
        "row": ["GT-100", "Green tea", "45000", "0.1", "2024-03-01"],
        "sheet": "Prices",
    }
    assert black.meta["row"] == ["BT-250", "Black tea", "60000", "0.25", ""]
    assert herbal.text == "SKU: HB-050; Item: Herbal mix; Price: 38500; Weight, kg: 12.5"


def test_xlsx_question_answer_sheet_becomes_qa_pairs() -> None:
    document = extract(make_xlsx(), "catalogue.xlsx", max_bytes=MB)
    faq_heading, first, second = document.blocks[4:]
    assert (faq_heading.kind, faq_heading.text) == ("heading", "FAQ")
    assert first.meta == {"question": "Есть ли доставка?", "answer": "Да, по всему Узбекистану.", "sheet": "FAQ"}
    assert second.text == "Можно оплатить картой?\nДа, Uzcard и Humo."


def test_single_sheet_workbook_has_no_sheet_heading() -> None:
    workbook = openpyxl.Workbook()
    workbook.active.append(["Question", "Answer"])
    workbook.active.append(["Do you deliver?", "Yes"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    document = extract(buffer.getvalue(), None, max_bytes=MB)
    assert document.kind == "xlsx"
    assert [(b.kind, b.meta) for b in document.blocks] == [
        ("qa", {"question": "Do you deliver?", "answer": "Yes", "sheet": "Sheet"})
    ]


# --------------------------------------------------------------------------------------------------------------------
# CSV


def test_cp1251_semicolon_csv_in_russian() -> None:
    data = 'Товар;Цена;Описание\nЧай зелёный;45,5;Из Ферганы\n"Чай; чёрный";60;"Крупный\nлист"\n'.encode("cp1251")

    document = extract(data, "прайс.csv", max_bytes=MB)

    assert document.kind == "csv"
    assert document.meta == {"encoding": "cp1251", "delimiter": ";"}
    assert document.title == "прайс"
    assert [b.meta["row"] for b in document.blocks] == [
        ["Чай зелёный", "45,5", "Из Ферганы"],
        ["Чай; чёрный", "60", "Крупный\nлист"],
    ]
    assert document.blocks[0].text == "Товар: Чай зелёный; Цена: 45,5; Описание: Из Ферганы"


def test_utf8_bom_csv_with_question_answer_header() -> None:
    data = '\ufeffSavol,Javob\nYetkazib berasizmi?,"Ha, har kuni."\nNarxi qancha?,45 000 soʻm\n'.encode()

    document = extract(data, "faq.csv", max_bytes=MB)

    assert document.meta["encoding"] == "utf-8-sig"
    assert [(b.kind, b.meta) for b in document.blocks] == [
        ("qa", {"question": "Yetkazib berasizmi?", "answer": "Ha, har kuni."}),
        ("qa", {"question": "Narxi qancha?", "answer": "45 000 soʻm"}),
    ]


def test_csv_is_recognised_without_a_name_and_in_utf16_tab_separated_form() -> None:
    plain = b"Item,Price\nGreen tea,45000\nBlack tea,60000\n"
    assert detect_kind(plain, None) == "csv"
    # Excel's "Unicode text" export: UTF-16 with BOM, tab separated.
    utf16 = "Item\tPrice\nGreen tea\t45000\nBlack tea\t60000\n".encode("utf-16")
    document = extract(utf16, "export.txt", max_bytes=MB)
    assert document.kind == "text"  # the .txt name keeps it text ...
    document = extract(utf16, "export.csv", max_bytes=MB)  # ... and a .csv name reads it as a table
    assert [b.meta["row"] for b in document.blocks] == [["Green tea", "45000"], ["Black tea", "60000"]]


# --------------------------------------------------------------------------------------------------------------------
# Text and Markdown


MARKDOWN = """Acme Tea
========

Welcome to our shop.
We sell tea from the Fergana valley.

## Delivery
- Free in Tashkent
  for orders over 200 000 so'm
- Regions: 3 days
  1. Pay online
* Pickup from the shop

Shipping times
--------------

| Region | Days |
|--------|------|
| Tashkent | 1 |
| Samarkand | 3 |

Q: Do you deliver on Sundays?
A: Yes, every day.
Savol: Narxi qancha?
Javob: 45 000 so'm.

---
The end.
"""


def test_markdown_structure() -> None:
    document = extract(MARKDOWN.encode(), "about.md", max_bytes=MB)

    assert document.kind == "text"
    assert document.title == "Acme Tea"
    assert [(b.kind, b.text, b.level) for b in document.blocks] == [
        ("heading", "Acme Tea", 1),
        ("paragraph", "Welcome to our shop.\nWe sell tea from the Fergana valley.", 0),
        ("heading", "Delivery", 2),
        ("list_item", "Free in Tashkent for orders over 200 000 so'm", 0),
        ("list_item", "Regions: 3 days", 0),
        ("list_item", "Pay online", 1),
        ("list_item", "Pickup from the shop", 0),
        ("heading", "Shipping times", 2),
        ("table_row", "Region: Tashkent; Days: 1", 0),
        ("table_row", "Region: Samarkand; Days: 3", 0),
        ("qa", "Do you deliver on Sundays?\nYes, every day.", 0),
        ("qa", "Narxi qancha?\n45 000 so'm.", 0),
        ("paragraph", "The end.", 0),
    ]


def test_plain_cp1251_text_and_title_from_the_file_name() -> None:
    document = extract("Мы открыты с 9 до 18.\n\nДоставка бесплатная.".encode("cp1251"), "info.txt", max_bytes=MB)
    assert document.meta == {"encoding": "cp1251"}
    assert document.title == "info"
    assert [b.text for b in document.blocks] == ["Мы открыты с 9 до 18.", "Доставка бесплатная."]


def test_utf8_with_a_stray_byte_stays_utf8() -> None:
    data = "Привет! Доставка бесплатная по всему городу.".encode() + b"\xff" + " Звоните.".encode()
    document = extract(data, "note.txt", max_bytes=MB)
    assert document.meta == {"encoding": "utf-8"}
    assert document.blocks[0].text == "Привет! Доставка бесплатная по всему городу. Звоните."


def test_rendered_text_and_dict_round_trip() -> None:
    document = extract(MARKDOWN.encode(), "about.md", max_bytes=MB)
    text = document.text
    assert text.startswith("# Acme Tea\n\nWelcome to our shop.")
    assert "- Free in Tashkent for orders over 200 000 so'm\n- Regions: 3 days\n  - Pay online" in text
    assert "Region: Tashkent; Days: 1\nRegion: Samarkand; Days: 3" in text
    assert ExtractedDocument.from_dict(document.to_dict()) == document


# --------------------------------------------------------------------------------------------------------------------
# General rules


def test_empty_file() -> None:
    error = error_of(b"", "empty.pdf")
    assert (error.code, error.message) == ("empty", EMPTY_FILE)
    assert str(error) == "The file is empty."


def test_oversize_file_is_refused_before_parsing() -> None:
    error = error_of(b"a" * 2048, "big.txt", max_bytes=1024)
    assert (error.code, error.message) == ("too_large", FILE_TOO_LARGE)
    assert error.params == {"max_mb": "0.00098"}
    error = error_of(b"a" * (21 * MB), "big.txt", max_bytes=20 * MB)
    assert error.params == {"max_mb": "20"}


def test_whitespace_only_text_has_nothing_to_learn() -> None:
    assert error_of(b" \n\n\t \n", "blank.txt").code == "no_text"


def test_text_budget() -> None:
    assert error_of(b"word " * 1000, "long.txt", max_chars=100).code == "too_much_text"


def test_legacy_office_and_other_formats() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512
    error = error_of(ole, "old.doc")
    assert (error.code, error.message) == ("legacy_office", LEGACY_OFFICE)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not an office file")
    assert error_of(buffer.getvalue(), "bundle.zip").code == "unsupported_type"
    assert error_of(buffer.getvalue(), "bundle.xlsx").params == {"format": "XLSX"}
    assert error_of(b"{\\rtf1\\ansi Hello}", "letter.rtf").code == "unsupported_type"
    assert error_of(b"\x89PNG\r\n\x1a\n" + os.urandom(256), "photo.png").code == "unsupported_type"


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (make_pdf([["x"]]), "report.docx", "pdf"),  # content wins over the name
        (make_docx(), None, "docx"),
        (make_xlsx(), "prices.pdf", "xlsx"),
        (b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", None, "html"),
        (b"Plain words, with a comma.\nAnother line.", None, "text"),
        (b"a,b\n1,2\n", "data.txt", "text"),
        (b"a;b\n1;2\n", "data", "csv"),
        (b"<html><body><table><tr><td>1</td></tr></table></body></html>", "export.xls", "html"),  # 1C-style
        (b"Item\tPrice\nTea\t45000\n", "export.xls", "csv"),
    ],
)
def test_detect_kind(data: bytes, filename: str | None, expected: str) -> None:
    assert detect_kind(data, filename) == expected


def test_content_hash_detects_duplicates() -> None:
    assert content_hash(b"same") == content_hash(b"same") != content_hash(b"other")
    assert len(content_hash(b"")) == 64


# --------------------------------------------------------------------------------------------------------------------
# HTML


PAGE = """<!doctype html><html><head><title>Acme Tea — Prices</title></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a> <a href="/contact">Contact</a></nav>
<article>
<h1>Our teas</h1>
<p>We sell the finest green and black teas from Uzbekistan. Every pack is sealed at the farm and shipped within two
days of your order, wherever you are in the country.</p>
<h2>Delivery</h2>
<p>Delivery in Tashkent is free for orders over 200 000 so'm. Other regions are served by courier within three to
five working days.</p>
<ul><li>Green tea, 100 g<ul><li>Also in 250 g packs</li></ul></li><li>Black tea, 250 g</li></ul>
<table><tr><th>Item</th><th>Price</th></tr><tr><td>Green tea</td><td>45 000</td></tr>
<tr><td>Black tea</td><td>60 000</td></tr></table>
</article>
<footer>© Acme Tea 2024. Cookie settings. Privacy policy.</footer>
</body></html>"""


def test_extract_html_main_text_structure() -> None:
    document = extract_html(PAGE, "https://acme.test/prices")

    assert document.kind == "html"
    assert document.meta == {"url": "https://acme.test/prices"}
    assert document.title
    blocks = [(b.kind, b.text, b.level) for b in document.blocks]
    assert ("heading", "Delivery", 2) in blocks
    assert ("list_item", "Green tea, 100 g", 0) in blocks
    assert ("list_item", "Also in 250 g packs", 1) in blocks
    rows = [b for b in document.blocks if b.kind == "table_row"]
    assert [b.meta["row"] for b in rows] == [["Green tea", "45 000"], ["Black tea", "60 000"]]
    assert not any("Cookie settings" in b.text for b in document.blocks)


def test_extract_html_falls_back_when_trafilatura_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *args, **kwargs: None)
    document = extract_html(PAGE, "https://acme.test/prices")

    assert document.title == "Acme Tea — Prices"
    blocks = [(b.kind, b.text, b.level) for b in document.blocks]
    assert ("heading", "Our teas", 1) in blocks
    assert ("list_item", "Also in 250 g packs", 1) in blocks
    assert any(b.kind == "table_row" and b.meta["row"] == ["Black tea", "60 000"] for b in document.blocks)
    assert extract_html("", "https://acme.test/").blocks == []


def test_uploaded_html_file_and_html_decoding() -> None:
    data = PAGE.replace("<head>", '<head><meta charset="windows-1251">').replace("Our teas", "Наш чай")
    encoded = data.encode("cp1251", errors="replace")
    assert "Наш чай" in decode_html(encoded)
    assert "Наш чай" in decode_html(encoded, "windows-1251")
    document = extract(PAGE.encode(), "prices.html", max_bytes=MB)
    assert document.kind == "html"
    assert any(b.kind == "table_row" for b in document.blocks)


def test_block_defaults_and_error_formatting() -> None:
    assert Block(kind="paragraph", text="x") == Block("paragraph", "x", 0, {})
    error = ExtractionError(FILE_TOO_LARGE, code="too_large", params={"max_mb": "20"})
    assert str(error) == "The file is too large. The maximum size is 20 MB."
    assert extract_module.ExtractionError is ExtractionError
