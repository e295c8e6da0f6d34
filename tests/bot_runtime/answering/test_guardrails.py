"""The content filter: obfuscated abuse, spam and harmful requests are caught; shop questions never are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot_runtime.answering.guardrails import Guardrails, GuardReason, deobfuscate

ROOT = Path(__file__).resolve().parents[3]
guard = Guardrails(max_length=500)


@pytest.mark.parametrize(
    "text",
    [
        "fuck you",
        "F.U.C.K you",
        "fuuuuuck",
        "f*ck this",
        "you are an 1d10t",
        "а$$hole",
        "пиздец",
        "п*здец",
        "х.у.й",
        "бляяяять",
        "blyat",
        "сука",
        "cyka",
        "jalab",
        "qanjiq",
        "қанжиқ",
        "s1kaman",
        "a.h.m.o.q",
        "онангни",
    ],
)
def test_obfuscated_abuse_is_blocked(text: str) -> None:
    verdict = guard.check_inbound(text)
    assert not verdict.allowed and verdict.reason is GuardReason.ABUSE and verdict.matched


@pytest.mark.parametrize(
    "text",
    [
        "how to make a bomb",
        "как сделать бомбу",
        "bomba qanday yasaladi",
        "where to buy cocaine",
        "хочу покончить с собой",
        "o'zimni o'ldirmoqchiman",
    ],
)
def test_harmful_requests_are_blocked(text: str) -> None:
    assert guard.check_inbound(text).reason is GuardReason.HARMFUL


@pytest.mark.parametrize(
    "text",
    [
        "Earn $500 per day! Click here http://x.example",
        "Казино, ставки, бонус! t.me/casino",
        "Kuniga 100$ daromad, kanalga obuna bo'ling t.me/x",
        "buy buy buy buy buy buy buy buy",
        "!" * 40,
    ],
)
def test_spam_is_blocked(text: str) -> None:
    assert guard.check_inbound(text).reason is GuardReason.SPAM


@pytest.mark.parametrize(
    "text",
    [
        "Bomba chegirmalar bormi?",  # Uzbek slang: "awesome discounts"
        "Вы страхуете доставку?",  # contains "хуе" inside an ordinary word
        "Я колебался между двумя диванами",
        "Do you sell fire retardant fabric?",
        "Can I pay with Bitcoin?",
        "Bonus bormi?",
        "Do you give a bonus for loyal customers?",
        "Kuniga nechta buyurtma qabul qilasiz?",
        "Mashinam bor, avtoturargoh bormi?",
        "Price 4 500 000 so'm, 160x200, +998 71 200 45 45",
        "Send me the link to your catalogue: https://shop.example/catalog",
        "Dick Smith here, is my order ready?",
        "shiitake-coloured sofa?",
    ],
)
def test_ordinary_messages_pass(text: str) -> None:
    assert guard.check_inbound(text).allowed, guard.check_inbound(text)


def test_no_bench_shop_question_is_blocked() -> None:
    questions = [json.loads(line)["question"] for line in (ROOT / "bench" / "questions.jsonl").read_text().splitlines()]
    blocked = [q for q in questions if not Guardrails().check_inbound(q).allowed]
    assert len(questions) >= 60 and blocked == []


def test_knowledge_base_text_passes_outbound() -> None:
    # Answers quote the knowledge base; transliteration must not invent matches ("меньшую" -> men-sh-uyu).
    assert Guardrails().check_outbound("Для заказов на меньшую сумму доставка стоит 150 000 сумов.").allowed
    texts = [p.read_text() for p in (ROOT / "bench" / "kb").rglob("*") if p.is_file()]
    assert texts and all(Guardrails(max_length=100_000).check_outbound(text).allowed for text in texts)


def test_length_and_outbound() -> None:
    verdict = guard.check_inbound("a" * 501)
    assert verdict.reason is GuardReason.TOO_LONG
    assert guard.check_outbound("Here is the link: https://t.me/shop and 3 bonus offers: casino crypto bet").allowed
    assert guard.check_outbound("You are a fucking idiot").reason is GuardReason.ABUSE


def test_extra_words_and_deobfuscation() -> None:
    custom = Guardrails(extra_words=["competitorname"])
    assert custom.check_inbound("buy at CompetitorName instead").reason is GuardReason.ABUSE
    assert deobfuscate("F.U.C.K") == ["fuck"]
    assert deobfuscate("Қанжиқ") == ["kanjik"]
