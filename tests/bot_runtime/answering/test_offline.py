"""The offline answerer: Q&A answers, rows, sentences, the customer's language and script, the fallback."""

from __future__ import annotations

import pytest

from bot_runtime.answering.chunking import chunk_csv, chunk_document, chunk_faq
from bot_runtime.answering.index import KnowledgeIndex
from bot_runtime.answering.offline import OfflineAnswerer, default_fallback_message
from bot_runtime.i18n import use_locale

LONG_EN = """# Delivery
We deliver across the city every day. Delivery is free for orders over 1,000,000 UZS. Smaller orders pay 50,000 UZS.
Our drivers call one hour before arrival. Couriers cannot carry items above the fifth floor without an elevator.
Regions are served by a partner courier within five days. Fragile goods are packed in double cardboard boxes.
Every parcel is insured by the shop until you sign for it. Old packaging is taken back on request at the door.
"""
UZ_LATIN = """# Kafolat
Barcha mahsulotlarga 12 oy kafolat beriladi.
"""
RU = """# Гарантия
На все товары действует гарантия 12 месяцев.
"""


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    chunks = [
        *chunk_document(LONG_EN, source_id="delivery-en", language="en"),
        *chunk_document(UZ_LATIN, source_id="warranty-uz", language="uz"),
        *chunk_document(RU, source_id="warranty-ru", language="ru"),
        *chunk_faq([("Do you have gift cards?", "Yes, from 100,000 UZS.")], source_id="faq", language="en"),
        *chunk_csv("sku,name,price\nGC-1,Gift card,100000\nLM-1,Lamp,250000\n", source_id="prices"),
    ]
    return KnowledgeIndex.build(chunks)


def ask(index: KnowledgeIndex, question: str, language: str, **kwargs: str):  # type: ignore[no-untyped-def]
    return OfflineAnswerer().answer(question, index.search(question, language=language), language=language, **kwargs)


def test_faq_question_gets_its_answer(index: KnowledgeIndex) -> None:
    result = ask(index, "Can I buy a gift card?", "en")
    assert result.text == "Yes, from 100,000 UZS." and result.source_ids == ("faq",) and not result.fallback


def test_price_row_is_returned_whole(index: KnowledgeIndex) -> None:
    result = ask(index, "LM-1 narxi qancha?", "uz")
    assert "price: 250000" in result.text and result.source_ids == ("prices",)


def test_long_passage_is_cut_to_its_relevant_sentences(index: KnowledgeIndex) -> None:
    result = ask(index, "How much is delivery for small orders?", "en")
    assert "50,000 UZS" in result.text
    assert "Fragile" not in result.text
    assert len(result.text) < len(LONG_EN) / 2


def test_the_fact_comes_in_the_customers_language(index: KnowledgeIndex) -> None:
    assert ask(index, "Какая у вас гарантия?", "ru").source_ids == ("warranty-ru",)
    assert ask(index, "Kafolat qancha?", "uz").source_ids == ("warranty-uz",)


def test_uzbek_cyrillic_question_gets_a_cyrillic_answer(index: KnowledgeIndex) -> None:
    result = ask(index, "Кафолат муддати қанча?", "uz")
    assert result.source_ids == ("warranty-uz",)
    assert result.text == "Барча маҳсулотларга 12 ой кафолат берилади."


def test_nothing_relevant_gets_the_fallback(index: KnowledgeIndex) -> None:
    result = ask(index, "Do you repair spaceships on Mars?", "en", fallback_message="Ask our manager, please.")
    assert result.fallback and result.text == "Ask our manager, please." and result.source_ids == ()
    default = ask(index, "Who won the football match yesterday?", "en")
    assert default.fallback and default.text == default_fallback_message()
    with use_locale("en"):
        assert default_fallback_message().startswith("Sorry")


def test_threshold_decides(index: KnowledgeIndex) -> None:
    question = "Is delivery free?"
    hits = index.search(question, language="en")
    assert not OfflineAnswerer(threshold=0.0).answer(question, hits, language="en").fallback
    assert OfflineAnswerer(threshold=1.01).answer(question, hits, language="en").fallback


@pytest.mark.parametrize("greeting", ["Salom!", "Привет", "hello", "Rahmat", "спасибо"])
def test_greetings_and_thanks_are_not_fallbacks(index: KnowledgeIndex, greeting: str) -> None:
    result = OfflineAnswerer().answer(greeting, index.search(greeting), language=None)
    assert not result.fallback and result.source_ids == () and result.text
