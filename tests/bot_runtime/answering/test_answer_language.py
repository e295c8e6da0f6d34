"""When the knowledge base holds a fact in several languages, the offline answer quotes the question's language."""

from __future__ import annotations

import pytest

from bot_runtime.answering.chunking import chunk_document
from bot_runtime.answering.index import KnowledgeIndex
from bot_runtime.answering.offline import OfflineAnswerer

KB = (
    "# Gulnora Bakery\n\nWe are open every day from 8:00 to 20:00. Our address is 12 Amir Temur street, Tashkent.\n\n"
    "Delivery across Tashkent costs 15 000 sum and takes about one hour.\n\n"
    "# Gulnora nonvoyxonasi\n\nHar kuni soat 8:00 dan 20:00 gacha ishlaymiz. "
    "Manzil: Toshkent, Amir Temur koʻchasi 12.\n\n"
    "# Пекарня Гулнора\n\nМы работаем каждый день с 8:00 до 20:00. Адрес: Ташкент, улица Амира Темура, 12.\n\n"
    "Доставка по Ташкенту стоит 15 000 сумов и занимает около часа."
)


@pytest.mark.parametrize(
    ("question", "language", "expected"),
    [
        ("Во сколько вы открываетесь?", "ru", "Мы работаем"),
        ("Soat nechida ochilasiz?", "uz", "ishlaymiz"),
        ("What time do you open?", "en", "We are open"),
    ],
)
def test_answer_comes_from_the_questions_language(question: str, language: str, expected: str) -> None:
    index = KnowledgeIndex.build(chunk_document(KB, source_id="about", title="About us"))
    hits = index.search(question, k=5, language=language)
    result = OfflineAnswerer().answer(question, hits, language=language)
    assert not result.fallback
    assert expected in result.text
