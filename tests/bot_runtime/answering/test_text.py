"""Normalisation, transliteration, exact tokens and stemming."""

from __future__ import annotations

import pytest

from bot_runtime.answering.text import (
    canonical,
    char_ngrams,
    cyrillic_to_latin,
    exact_tokens,
    latin_to_cyrillic,
    normalize,
    stem,
    to_script,
    uzbek_stem,
    words,
)


@pytest.mark.parametrize("variant", ["oʻzbek", "o‘zbek", "o'zbek", "o`zbek", "o’zbek", "oʼzbek", "O´ZBEK"])
def test_every_apostrophe_variant_normalises_to_one_form(variant: str) -> None:
    assert normalize(variant) == "o'zbek"
    assert canonical(normalize(variant)) == "ozbek"


def test_uzbek_cyrillic_to_latin_follows_the_official_rules() -> None:
    assert cyrillic_to_latin("Етказиб бериш қанча туради?") == "yetkazib berish qancha turadi?"
    assert cyrillic_to_latin("Ўзбекистон ғалаба ҳаёт") == "o'zbekiston g'alaba hayot"
    assert cyrillic_to_latin("қаерда") == "qayerda"  # е after a vowel is "ye"
    assert cyrillic_to_latin("акция") == "aksiya"  # ц after a consonant is "s"


def test_latin_to_cyrillic_keeps_brands_contacts_and_numbers() -> None:
    text = "Yetkazib berish bepul. Qo'ng'iroq qiling: +998 71 200 45 45, info@shop.uz, Payme yoki Click, BTS yo'li"
    converted = latin_to_cyrillic(text)
    assert converted.startswith("Етказиб бериш бепул. Қўнғироқ қилинг:")
    assert "+998 71 200 45 45" in converted and "info@shop.uz" in converted
    assert "Click" in converted and "BTS" in converted
    assert "йўли" in converted


def test_to_script_round_trips_uzbek() -> None:
    latin = "Chegirma bor, o'zbekcha"
    assert to_script(to_script(latin, "cyrl"), "latn") == latin
    assert to_script(latin, "latn") == latin


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("Narxi 4 500 000 so'm", "4500000"),
        ("Price 4,500,000 UZS", "4500000"),
        ("4500000", "4500000"),
        ("total 1,200.50", "1200.50"),
        ("Артикул КР-0900", "kr0900"),
        ("sku AB-1200 please", "ab1200"),
        ("AB1200", "ab1200"),
        ("size 160x200", "160x200"),
        ("open 9:00", "09:00"),
        ("15% off", "15%"),
        ("mail info@shop.uz", "info@shop.uz"),
        ("tg @shop_bot", "@shop_bot"),
    ],
)
def test_exact_tokens_survive_formatting(text: str, token: str) -> None:
    assert token in exact_tokens(normalize(text))


def test_phone_numbers_match_with_or_without_country_code() -> None:
    full = exact_tokens(normalize("Call +998 (71) 200-45-45"))
    local = exact_tokens(normalize("200 45 45"))
    assert "998712004545" in full
    assert set(local) & set(full)


def test_stemming_per_language_meets_in_one_key_space() -> None:
    assert stem("divanlarga", "uz") == stem("divan", "uz") == "divan"
    assert stem("доставки", "ru") == stem("доставка", "ru")
    assert stem("deliveries", "en") == stem("delivery", "en")
    # Russian stems are transliterated, so a loanword meets its Uzbek spelling.
    assert stem("шкафы", "ru") == stem("shkaflar", "uz") == "shkaf"
    assert uzbek_stem("manzili") == "manzil"
    assert uzbek_stem("uy") == "uy"  # too short to strip


def test_words_and_ngrams() -> None:
    assert words(normalize("Do‘koningiz «Sofia» three-door")) == ["do'koningiz", "sofia", "three", "door"]
    grams = char_ngrams("divan")
    assert {"^di", "div", "van", "^div", "ivan"} <= grams
    assert "an$" not in grams
