"""Language detection for Uzbek (Latin and Cyrillic), Russian and English from script, letters and function words.

No model is downloaded: customers' messages are short and these three languages are told apart well by a handful
of signals (ў қ ғ ҳ, oʻ gʻ, q and x in Latin words, Uzbek suffixes, stop-words).
"""

from __future__ import annotations

import re

from bot_runtime.answering.text import RU_ONLY_LETTERS, STOP_WORDS, UZ_CYRILLIC_LETTERS, cyrillic_to_latin, normalize
from bot_runtime.i18n import normalize_locale

LANGUAGES: tuple[str, ...] = ("uz", "ru", "en")

# Frequent Uzbek words that are not stop-words but say "Uzbek" loudly, in canonical Latin.
_UZ_MARKERS = frozenset(
    """narx narxi qancha turadi bormi yo'q bor kerak salom rahmat yetkazib berish to'lov kafolat manzil manzili
    qayerda qachon bugun ertaga kecha do'kon buyurtma mahsulot soat kun oy yil ish vaqt iltimos ha yo'q mumkinmi
    qilsa bo'ladi bo'ladimi olsam olib kelib berasizmi sotasizmi bormi kerakmi""".split()
)
_UZ_SUFFIXES = ("lar", "larni", "larga", "ning", "dan", "gacha", "ngiz", "imiz", "sizmi", "asizmi", "mi", "dagi", "lik")
_RU_SUFFIXES = ("ться", "ется", "ость", "ый", "ий", "ая", "ое", "ые", "ого", "ему", "ами", "ыми", "ешь", "ете")
_EN_MARKERS = frozenset(
    """the and you your what how much do does is are can have where when which with price cost delivery open hours
    address phone thanks hello hi please order buy available""".split()
)

_WORD_RE = re.compile(r"[^\W\d_][\w']*")


def detect_language(text: str, hint: str | None = None) -> str | None:
    """Return 'uz', 'ru' or 'en' for ``text``, or ``hint`` (normalised) when the text gives too little evidence.

    ``hint`` is typically the Telegram ``language_code`` or the bot's default language; it also breaks near-ties.
    Returns None only when the text says nothing and there is no usable hint.
    """
    fallback = normalize_locale(hint)
    scores = language_scores(text)
    if not scores:
        return fallback
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    best, best_score = ranked[0]
    second_score = ranked[1][1] if len(ranked) > 1 else 0.0
    if best_score < 1.0:
        return fallback
    if fallback in scores and best_score - scores[fallback] < 0.5 and best != fallback:
        return fallback
    if best_score - second_score < 0.25 and fallback is None and best_score < 2.0:
        return None
    return best


def language_scores(text: str) -> dict[str, float]:
    """Evidence per language (higher is stronger); empty when ``text`` has no letters."""
    norm = normalize(text)
    tokens = _WORD_RE.findall(norm)
    if not tokens:
        return {}
    cyr = sum(1 for ch in norm if "а" <= ch <= "я" or ch in "ёўқғҳ")
    lat = sum(1 for ch in norm if "a" <= ch <= "z")
    scores = {"uz": 0.0, "ru": 0.0, "en": 0.0}
    if cyr > lat:
        _score_cyrillic(norm, tokens, scores)
    else:
        _score_latin(norm, tokens, scores)
    return scores


def _score_cyrillic(norm: str, tokens: list[str], scores: dict[str, float]) -> None:
    uz_letters = sum(1 for ch in norm if ch in UZ_CYRILLIC_LETTERS)
    scores["uz"] += 2.0 * min(uz_letters, 3)
    scores["ru"] += 0.6 * min(sum(1 for ch in norm if ch in RU_ONLY_LETTERS), 3)
    for token in tokens:
        latin = cyrillic_to_latin(token)
        if token in STOP_WORDS["ru"]:
            scores["ru"] += 1.0
        if latin in STOP_WORDS["uz"] or latin in _UZ_MARKERS or latin.replace("k", "q") in _UZ_MARKERS:
            scores["uz"] += 1.2
        if len(token) > 4 and token.endswith(_RU_SUFFIXES):
            scores["ru"] += 0.5
        if len(latin) > 4 and latin.endswith(_UZ_SUFFIXES):
            scores["uz"] += 0.5
    # Short Russian questions ("Цена?") carry no signal but Cyrillic itself: Russian is the likelier default.
    scores["ru"] += 1.0


def _score_latin(norm: str, tokens: list[str], scores: dict[str, float]) -> None:
    for token in tokens:
        if token in STOP_WORDS["en"] or token in _EN_MARKERS:
            scores["en"] += 1.0
        if token in STOP_WORDS["uz"] or token in _UZ_MARKERS:
            scores["uz"] += 1.0
        if re.search(r"[og]'", token):
            scores["uz"] += 1.5
        if re.search(r"q(?!u)|x[aeiou]|[^st]h[aeiou]|yo'?q|sh[aeiou]", token) and token not in STOP_WORDS["en"]:
            scores["uz"] += 0.4
        if len(token) > 4 and token.endswith(_UZ_SUFFIXES):
            scores["uz"] += 0.6
        if len(token) > 3 and token.endswith(("ing", "tion", "ed", "ly", "ness", "ment")) and "'" not in token:
            scores["en"] += 0.4
        if re.search(r"th|w|ee|oo|ou", token):
            scores["en"] += 0.3
