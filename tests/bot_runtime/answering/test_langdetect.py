"""Language detection for uz (both scripts), ru and en."""

from __future__ import annotations

from bot_runtime.answering.langdetect import detect_language

SAMPLES: list[tuple[str, str]] = [
    ("Assalomu alaykum, narxlar qanday?", "uz"),
    ("Buyurtmani qachon olib kelasiz?", "uz"),
    ("Chegirmalar bormi hozir?", "uz"),
    ("Do'kon soat nechada yopiladi?", "uz"),
    ("Menga katta stol kerak", "uz"),
    ("Kartada to'lasa bo'ladimi?", "uz"),
    ("Ассалому алайкум, нархлар қандай?", "uz"),
    ("Буюртмани қачон олиб келасиз?", "uz"),
    ("Чегирма борми?", "uz"),
    ("Менга катта стол керак", "uz"),
    ("Здравствуйте, какие у вас цены?", "ru"),
    ("Когда привезёте заказ?", "ru"),
    ("Есть ли скидки сейчас?", "ru"),
    ("Во сколько закрывается магазин?", "ru"),
    ("Мне нужен большой стол", "ru"),
    ("Можно оплатить картой?", "ru"),
    ("Спасибо большое", "ru"),
    ("Hello, what are your prices?", "en"),
    ("When will you deliver my order?", "en"),
    ("Do you have any discounts now?", "en"),
    ("What time does the shop close?", "en"),
    ("I need a big table", "en"),
    ("Can I pay by card?", "en"),
    ("Thanks a lot", "en"),
]


def test_accuracy_on_labelled_samples() -> None:
    wrong = [(text, expected, detect_language(text)) for text, expected in SAMPLES if detect_language(text) != expected]
    assert len(wrong) <= 1, wrong


def test_too_short_falls_back_to_the_hint() -> None:
    assert detect_language("ok") is None
    assert detect_language("ok", hint="uz") == "uz"
    assert detect_language("👍", hint="ru-RU") == "ru"
    assert detect_language("Sofia", hint="xx") is None


def test_hint_breaks_near_ties_but_not_clear_evidence() -> None:
    assert detect_language("Do you deliver to Chilonzor?", hint="uz") == "en"
    assert detect_language("Yetkazib berish bormi?", hint="ru") == "uz"
