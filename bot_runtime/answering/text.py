"""Text normalisation, Uzbek Latin <-> Cyrillic transliteration, tokenisation and stemming for uz / ru / en.

Everything the index stores is keyed on one canonical form: casefolded, Latin script, apostrophes dropped. Uzbek
Cyrillic and Russian are transliterated into it, so "доставка", "yetkazib" and "Етказиб" land in one key space
and shared loanwords ("divan" / "диван") and exact tokens (SKUs, phones, prices) meet across scripts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import snowballstemmer

# Every character people use for the Uzbek oʻ / gʻ mark and the tutuq belgisi (ʼ), unified to "'".
APOSTROPHES = "ʻʼ'`’‘´ʹ′‛"
_APOSTROPHE_TABLE = str.maketrans({ch: "'" for ch in APOSTROPHES})
_DASH_TABLE = str.maketrans({ch: "-" for ch in "‐‑‒–—―−"})
# Narrow / non-breaking spaces show up inside prices ("120 000") pasted from spreadsheets.
_SPACE_TABLE = str.maketrans({ch: " " for ch in "\u00a0\u2007\u202f\u2009\u200a"})

UZ_CYRILLIC_LETTERS = frozenset("ўқғҳ")
RU_ONLY_LETTERS = frozenset("ыщэ")

_CYR_TO_LAT: dict[str, str] = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "ж": "j", "з": "z", "и": "i", "й": "y", "к": "k",
    "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f",
    "х": "x", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sh", "ъ": "'", "ы": "i", "ь": "", "э": "e", "ё": "yo",
    "ю": "yu", "я": "ya", "ў": "o'", "қ": "q", "ғ": "g'", "ҳ": "h",
}  # fmt: skip
_CYR_VOWELS = frozenset("аеёиоуўэюяыъь")

_LAT_DIGRAPHS: dict[str, str] = {"o'": "ў", "g'": "ғ", "sh": "ш", "ch": "ч", "yo": "ё", "yu": "ю", "ya": "я"}
_LAT_TO_CYR: dict[str, str] = {
    "a": "а", "b": "б", "d": "д", "e": "е", "f": "ф", "g": "г", "h": "ҳ", "i": "и", "j": "ж", "k": "к",
    "l": "л", "m": "м", "n": "н", "o": "о", "p": "п", "q": "қ", "r": "р", "s": "с", "t": "т", "u": "у",
    "v": "в", "x": "х", "y": "й", "z": "з", "c": "с", "w": "в", "'": "ъ",
}  # fmt: skip

STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        """a an the is are was were be been am do does did done you your yours we our us i me my it its to of in
        on at for with from by about as and or but if then than that this these those there here what which who whom
        whose when where how why can could will would shall should may might must not no yes any some all so too
        very just also only have has had get got please hi hello thanks thank s t much many don't doesn't isn't i'm
        it's""".split()
    ),
    "ru": frozenset(
        """и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне было вот
        от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до вас нибудь опять уж
        вам ведь там потом себя ничего ей может они тут где есть надо ней для мы тебя их чем была сам чтоб без будто
        чего раз тоже себе под будет ж тогда кто этот того потому этого какой совсем ним здесь этом один почти мой тем
        чтобы нее сейчас были куда зачем всех никогда можно при наконец два об другой хоть после над больше тот через
        эти нас про всего них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том нельзя
        такой им более всегда конечно всю между сколько какие каких какое ваш ваши вашей у вас это её пожалуйста
        здравствуйте спасибо""".split()
    ),
    "uz": frozenset(
        """va bu u ular men sen siz biz sizlar bizlar uchun bilan ham yoki lekin ammo agar esa emas edi ekan bo'ladi
        bo'ladimi bo'lsa bo'lib bormi bor yo'q yo'qmi qancha necha nechta nima nimaga qanday qaysi qayerda qayer qachon
        kim mi da shu o'sha har hamma juda eng kerak kerakmi mumkin mumkinmi iltimos rahmat salom assalomu alaykum
        sizda sizlarda bizda menga sizga sizning mening qilib qilish qiladi qilsa""".split()
    ),
}

# Uzbek inflection, stripped slot by slot from the end of the word: the question particle, one case ending, then
# either one verb ending or (possessive, plural). Verb endings are tried first because "-adi" / "-iladi" also end in
# the possessive "-i". Derivational suffixes (-li, -lik, -chi) make new words and stay. Longest ending first.
_UZ_PARTICLE = ("mi",)
_UZ_CASE = ("gacha", "dagi", "ning", "dan", "tan", "ga", "ka", "qa", "da", "ta", "ni")
_UZ_VERB = (
    "yapsizlar", "asizlar", "yapsiz", "sizlar", "yapti", "iladi", "ilgan", "asiz", "aman", "ayman", "amiz", "ladi",
    "aydi", "adi", "ydi", "moq", "ishi", "ish", "gan", "kan", "qan", "ibdi", "ib",
)  # fmt: skip
_UZ_POSSESSIVE = ("ingiz", "imiz", "ngiz", "miz", "ing", "im", "si", "i")
_UZ_PLURAL = ("lar",)

_stemmers: dict[str, snowballstemmer.stemmer] = {}

# Word = letters with inner apostrophes / hyphens kept for now (split later); exact tokens are found separately.
_WORD_RE = re.compile(r"[^\W\d_](?:(?:[^\W_]|')*[^\W\d_])?")
_CYRILLIC_RE = re.compile(r"[а-яёўқғҳ]")
_LATIN_RE = re.compile(r"[a-z]")

_PHONE_RE = re.compile(r"(?<![\w+])\+?\d[\d\s()-]{5,}\d(?!\w)")
_SKU_RE = re.compile(r"(?<![\w-])([a-z]{1,5})-?(\d{2,8})(?:-(\d{1,6}))?(?![\w-])")
_DIMENSION_RE = re.compile(r"(?<![\w.])(\d{1,4}(?:\s?[x×х*]\s?\d{1,4}){1,2})(?![\w.])")
_NUMBER_RE = re.compile(r"(?<![\w.,])(\d{1,3}(?:[ ,.]\d{3})+|\d+)(?:[.,](\d{1,2}))?(?![\d])")
_TIME_RE = re.compile(r"(?<!\d)(\d{1,2})[:.](\d{2})(?!\d)")
_PERCENT_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:[.,]\d{1,2})?)\s?%")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_HANDLE_RE = re.compile(r"(?<![\w@])@[a-z0-9_]{3,32}")
_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"']+")


def normalize(text: str) -> str:
    """Casefold and unify the characters that vary between keyboards: apostrophes, dashes, odd spaces, ё."""
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_APOSTROPHE_TABLE).translate(_DASH_TABLE).translate(_SPACE_TABLE)
    return text.casefold()


def has_cyrillic(text: str) -> bool:
    """True when ``text`` (already casefolded) contains a Cyrillic letter."""
    return _CYRILLIC_RE.search(text) is not None


def script_of(text: str) -> str | None:
    """'cyrl', 'latn' or None for the majority script of ``text``."""
    cyr = len(_CYRILLIC_RE.findall(text.casefold()))
    lat = len(_LATIN_RE.findall(text.casefold()))
    if not cyr and not lat:
        return None
    return "cyrl" if cyr >= lat else "latn"


def cyrillic_to_latin(text: str) -> str:
    """Transliterate Cyrillic (Uzbek rules, which also serve Russian for matching) to Uzbek Latin, lower case.

    "е" is "ye" at the start of a word or after a vowel, "e" elsewhere, as in the official Uzbek rules.
    """
    out: list[str] = []
    prev = ""
    for ch in text.casefold():
        if ch == "е":
            out.append("ye" if (not prev or not prev.isalpha() or prev in _CYR_VOWELS) else "e")
        elif ch == "ц":
            out.append("ts" if prev and prev in _CYR_VOWELS else "s")
        else:
            out.append(_CYR_TO_LAT.get(ch, ch))
        prev = ch
    return "".join(out)


def latin_to_cyrillic(text: str) -> str:
    """Transliterate Uzbek Latin to Uzbek Cyrillic, keeping emails, URLs, handles and tokens with digits intact.

    Case is kept for the first letter of a word so that names and sentence starts still read naturally.
    """
    return re.sub(r"[^\s]+", lambda m: _latin_word_to_cyrillic(m.group(0)), text.translate(_APOSTROPHE_TABLE))


def _latin_word_to_cyrillic(token: str) -> str:
    if "@" in token or "://" in token or token.startswith("www.") or not _LATIN_RE.search(token.casefold()):
        return token
    letters = "".join(ch for ch in token if ch.isalpha())
    # Brand names (Visa, Click, Uzcard: letters Uzbek Latin doesn't use), acronyms and SKUs (BTS, DV-2040) stay.
    if re.search(r"c(?!h)|w", letters.casefold()) or (len(letters) > 1 and letters.isupper()):
        return token
    if any(ch.isdigit() for ch in token):
        # "108-uy", "2011-yildan": convert the letters, keep the numbers.
        return re.sub(r"[^\W\d_][\w']*", lambda m: _latin_word_to_cyrillic(m.group(0)), token)
    out: list[str] = []
    lower = token.casefold()
    i = 0
    prev_alpha = False
    while i < len(lower):
        pair = lower[i : i + 2]
        upper = token[i].isupper()
        if lower.startswith("yo'", i):
            piece, step = "йў", 3
        elif pair == "ye" and not prev_alpha:
            piece, step = "е", 2
        elif pair in _LAT_DIGRAPHS:
            piece, step = _LAT_DIGRAPHS[pair], 2
        elif lower[i] == "e" and not prev_alpha:
            piece, step = "э", 1
        elif lower[i] in _LAT_TO_CYR and not (lower[i] == "'" and not prev_alpha):
            piece, step = _LAT_TO_CYR[lower[i]], 1
        else:
            piece, step = lower[i], 1
        out.append(piece.upper() if upper else piece)
        prev_alpha = lower[i].isalpha()
        i += step
    return "".join(out)


def to_script(text: str, script: str) -> str:
    """Render Uzbek ``text`` in ``script`` ('latn' or 'cyrl'); text already in that script comes back unchanged."""
    current = script_of(text)
    if current == script or current is None:
        return text
    if script == "cyrl":
        return latin_to_cyrillic(text)
    return _cyrillic_to_latin_cased(text)


def _cyrillic_to_latin_cased(text: str) -> str:
    def convert(match: re.Match[str]) -> str:
        word = match.group(0)
        latin = cyrillic_to_latin(word)
        return latin[:1].upper() + latin[1:] if word[:1].isupper() else latin

    return re.sub(r"[^\W\d_]+", convert, text)


@lru_cache(maxsize=200_000)
def canonical(word: str) -> str:
    """The key form of one normalised word: Latin script, apostrophes dropped (users often omit them)."""
    if has_cyrillic(word):
        word = cyrillic_to_latin(word)
    return word.replace("'", "")


def stem(word: str, language: str | None) -> str:
    """Stem one normalised word for ``language`` and return it in canonical (Latin, apostrophe-free) form."""
    return _stem_cached(word, language)


@lru_cache(maxsize=200_000)
def _stem_cached(word: str, language: str | None) -> str:
    cyrillic = has_cyrillic(word)
    if cyrillic:
        if language == "ru" and not (UZ_CYRILLIC_LETTERS & set(word)):
            return canonical(_snowball("russian", word.replace("ё", "е")))
        return uzbek_stem(canonical(word))
    if language == "en":
        return _snowball("english", word.replace("'", ""))
    return uzbek_stem(canonical(word))


def _snowball(name: str, word: str) -> str:
    stemmer = _stemmers.get(name)
    if stemmer is None:
        stemmer = _stemmers[name] = snowballstemmer.stemmer(name)
    return stemmer.stemWord(word)


def uzbek_stem(word: str) -> str:
    """Strip Uzbek inflection from a canonical Latin word, keeping a stem of at least 3 letters."""
    word = _strip_one(_strip_one(word, _UZ_PARTICLE), _UZ_CASE)
    verb = _strip_one(word, _UZ_VERB)
    if verb != word:
        return verb
    return _strip_one(_strip_one(word, _UZ_POSSESSIVE), _UZ_PLURAL)


def _strip_one(word: str, endings: tuple[str, ...]) -> str:
    for ending in endings:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return word[: -len(ending)]
    return word


def words(text: str) -> list[str]:
    """Word tokens of normalised ``text``; hyphenated words come out as their parts."""
    result: list[str] = []
    for match in _WORD_RE.finditer(text):
        token = match.group(0).strip("'")
        if token:
            result.append(token)
    return result


def is_stop_word(word: str) -> bool:
    """True for a function word in any of the three languages, Uzbek in either script (normalised form)."""
    return _is_stop_word(word)


@lru_cache(maxsize=50_000)
def _is_stop_word(word: str) -> bool:
    if len(word) < 2 or word in STOP_WORDS["en"] or word in STOP_WORDS["ru"] or word in STOP_WORDS["uz"]:
        return True
    return has_cyrillic(word) and cyrillic_to_latin(word) in STOP_WORDS["uz"]


def content_words(text: str) -> list[str]:
    """Normalised words of ``text`` without stop-words."""
    return [w for w in words(normalize(text)) if not is_stop_word(w)]


@lru_cache(maxsize=200_000)
def char_ngrams(key: str, sizes: tuple[int, ...] = (3, 4)) -> frozenset[str]:
    """Character n-grams of one canonical word, anchored at its start with '^' (suffixes vary, stems don't)."""
    padded = "^" + key
    return frozenset(padded[i : i + n] for n in sizes if len(padded) >= n for i in range(len(padded) - n + 1))


def exact_tokens(text: str) -> list[str]:
    """Extract exact tokens from normalised ``text`` in canonical form.

    Prices are digits only ("4 500 000", "4,500,000" and "4500000" are one token; "1,200.50" -> "1200.50");
    a phone yields its full digits plus its last 7 and 9 digits, so a local number finds an international one.
    """
    found: list[str] = []
    rest = text
    for regex in (_URL_RE, _EMAIL_RE):
        for match in regex.finditer(rest):
            found.append(match.group(0).rstrip(".,;:!?)"))
        rest = regex.sub(" ", rest)
    found.extend(m.group(0) for m in _HANDLE_RE.finditer(rest))
    for match in _TIME_RE.finditer(rest):
        hour, minute = int(match.group(1)), match.group(2)
        if hour < 24 and int(minute) < 60:
            found.append(f"{hour:02d}:{minute}")
    rest = _TIME_RE.sub(" ", rest)
    for match in _PERCENT_RE.finditer(rest):
        found.append(match.group(1).replace(",", ".") + "%")
    rest = _PERCENT_RE.sub(" ", rest)
    for match in _DIMENSION_RE.finditer(rest):
        found.append(re.sub(r"\s?[x×х*]\s?", "x", match.group(1)))
    rest = _DIMENSION_RE.sub(" ", rest)
    if has_cyrillic(rest):
        # SKUs typed on a Cyrillic keyboard ("КР-0900") still match.
        rest = re.sub(r"[а-яёўқғҳ]{1,5}-?\d", lambda m: cyrillic_to_latin(m.group(0)), rest)
    for match in _SKU_RE.finditer(rest):
        letters, digits, extra = match.groups()
        found.append(f"{letters}{digits}{extra or ''}")
    rest = _SKU_RE.sub(" ", rest)
    for match in _PHONE_RE.finditer(rest):
        digits = re.sub(r"\D", "", match.group(0))
        if 7 <= len(digits) <= 15 and not _looks_like_price(match.group(0)):
            found.append(digits)
            found.append(digits[-7:])
            if len(digits) > 9:
                found.append(digits[-9:])
            rest = rest.replace(match.group(0), " ")
    for match in _NUMBER_RE.finditer(rest):
        whole = re.sub(r"[ ,.]", "", match.group(1))
        found.append(f"{whole}.{match.group(2)}" if match.group(2) else whole.lstrip("0") or "0")
    return list(dict.fromkeys(found))


def _looks_like_price(candidate: str) -> bool:
    """'4 500 000' is a price, '+998 71 200 45 45' and '71-200-45-45' are phones: prices group digits in threes."""
    groups = re.findall(r"\d+", candidate)
    return len(groups) > 1 and all(len(g) == 3 for g in groups[1:]) and len(groups[0]) <= 3


def iter_sentences(text: str) -> Iterable[str]:
    """Split a passage into sentences and list items (lines), keeping each non-empty piece."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for piece in re.split(r"(?<=[.!?])\s+(?=[A-ZА-ЯЁЎҚҒҲ«\"(\d])", line):
            piece = piece.strip()
            if piece:
                yield piece
