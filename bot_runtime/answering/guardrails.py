"""Inbound and outbound content filter: abuse, spam, harmful requests and over-long messages, in uz / ru / en.

Matching happens on a "loose" Latin form of each word (Cyrillic transliterated, q/x/ё/е variants and apostrophes
folded, repeated letters collapsed) after undoing common obfuscation: leetspeak digits, mixed-script lookalikes,
letters spread out with dots or spaces, and masked letters (f*ck). Lists are deliberately narrow: an ordinary shop
question must never be blocked (bench/guardrails_bench.py checks that), so ambiguous words such as "bomba"
(Uzbek slang for "great") or "harom" only count inside harmful combinations, or not at all.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from bot_runtime.answering.text import APOSTROPHES, cyrillic_to_latin, has_cyrillic

DEFAULT_MAX_LENGTH = 2000


class GuardReason(StrEnum):
    """Why a message was refused (stored in the abuse log)."""

    TOO_LONG = "too_long"
    ABUSE = "abuse"
    SPAM = "spam"
    HARMFUL = "harmful"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The filter's decision; ``matched`` names what triggered it, for the owner's abuse log."""

    allowed: bool
    reason: GuardReason | None = None
    matched: str | None = None


ALLOW = Verdict(allowed=True)

# Entries: "word" matches the whole word, "word*" a prefix, "*word*" anywhere inside a word; "a b" is a phrase.
_ABUSE = """
fuck* *fuck* motherfuck* fck fcking fuk fukin shit shits shitty bullshit shithead bitch* bastard* asshole*
dickhead* cunt* whore* slut* retard retarded retards idiot idiots moron moronic morons faggot* nigger* nigga* wanker*
dumbass douchebag* piss_off shut_up_you
*хуй* хуе* хуё* хуя* хуев* нахуй нахер похуй охуе* охуи* пизд* *пизд* ебат* ебан* ебал* ебу ебет ебёт заеб* заёб*
наеб* наёб* уеб* уёб* выеб* долбоеб* долбоёб* бля бляд* блят* сука суки сучк* сучар* мудак* мудил* пидор* пидар* пидр*
гандон* залуп* шлюх* дебил* идиот* уродина урод уроды тварь твари мразь мрази чмо говн* cyka blya blyat* blyad* suka
pizd* nahuy nahui pohuy huy* ebat* eban* mudak* pidor* debil*
jalab* qanjiq* qo'taq* sikay* sikaman sikdim sikib siktir* sikish* onangni dalbayob* dolboyob* itvachcha* haromi
haromzoda* ahmoq ahmoqsan ahmoqsiz ahmoqlar axmoq axmoqsan tentak tentaksan tentak_bot isqirt padarla'nat*
la'nati yaramas
"""
_HARMFUL = """
cocaine heroin mephedrone methamphetamine meth_lab suicide kill_myself killing_myself end_my_life kill_you
i_will_kill terrorist* terror_attack
кокаин* героин* мефедрон* амфетамин* метамфетамин* наркотик* наркоту суицид* покончить_с_собой убить_себя убью
убить_тебя теракт* террорист*
kokain* geroin* narkotik* narkota giyohvand* o'zimni_o'ldir* joniga_qasd seni_o'ldir* o'ldiraman teraktchi terrorchi*
"""
# Harmful only together: an action of making / getting and an object that is dangerous to make or get.
_HARMFUL_ACTIONS = """make making build building how_to assemble cook сделать сделать изготов* собрать собрать
приготов* купить достать как_сделать yasash yasa* yasaladi tayyorla* olish olsa qanday_qilib ясаш ясала*"""
_HARMFUL_OBJECTS = """bomb bombs explosive* detonator* бомб* взрывчат* взрывн* детонатор* bomba bombani portlovchi*
портловчи* порох* poroh weapon* оружи* qurol* пистолет* pistol*"""
_SPAM_WORDS = """earn* income profit* invest* crypto* bitcoin* casino* bet bets betting forex airdrop giveaway* jackpot
bonus free_money click_here click_the_link passive_income per_day work_from_home subscribe* free_spins
заработ* доход* инвест* крипт* казино ставк* подпишись подписывайтесь подписывайся переходи* пассивн* форекс
биткоин* розыгрыш* бонус* в_день в_месяц без_вложений пиши_в_личку
daromad* pul_ishla* kazino stavka* kripto* investitsiya* obuna_bo'ling kanalga kuniga oyiga yutuq* bonus* foyda*
"""
_URL_RE = re.compile(r"(?:https?://|www\.|t\.me/|\b[\w-]+\.(?:com|ru|uz|io|me|example|xyz|club|top)\b/?)", re.I)
_HANDLE_RE = re.compile(r"(?<![\w@])@\w{4,}")
_SPREAD_RE = re.compile(r"(?<![^\W\d_])(?:[^\W\d_][\s.\-_*·,]+){2,}[^\W\d_](?![^\W\d_])")
_INNER_SEPARATORS_RE = re.compile(r"(?<=[^\W\d_])[.\-_·]+(?=[^\W\d_])")
_TOKEN_RE = re.compile(r"\S+")
_LEET_LATIN = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_LEET_CYRILLIC = str.maketrans({"0": "о", "3": "з", "4": "ч", "6": "б", "@": "а"})
_CYR_LOOKALIKES = str.maketrans("aeopcxykmtbh", "аеорсхукмтвн")
_LAT_LOOKALIKES = str.maketrans("аеорсхукмтвн", "aeopcxykmtbh")
_APOSTROPHE_TABLE = str.maketrans({ch: "'" for ch in APOSTROPHES})


@dataclass(frozen=True, slots=True)
class _Entry:
    parts: tuple[str, ...]
    mode: str  # "exact" | "prefix" | "contains"
    label: str
    cyrillic: bool  # Cyrillic entries match Cyrillic words only, compared in Cyrillic


@dataclass(frozen=True, slots=True)
class _Word:
    """A message word in both comparison forms: folded Cyrillic (Cyrillic words only) and loose Latin."""

    cyrillic: str | None
    latin: str


_CYRILLIC_FOLD = str.maketrans({"ё": "е", "ў": "у", "қ": "к", "ғ": "г", "ҳ": "х", "ъ": ""})


def _collapse(word: str) -> str:
    return re.sub(r"(.)\1+", r"\1", word)


def _fold_cyrillic(word: str) -> str:
    """Cyrillic compared as Cyrillic: transliterating first would let "меньшую" (men-sh-uyu) contain "huy"."""
    return _collapse(word.casefold().translate(_CYRILLIC_FOLD))


def _loose(word: str) -> str:
    """The folded Latin form of a word: Cyrillic transliterated, q/x/yo/ye/ts folded, repeated letters collapsed."""
    word = _collapse(word.casefold().translate(_APOSTROPHE_TABLE))
    if has_cyrillic(word):
        word = cyrillic_to_latin(word)
    word = word.replace("'", "").replace("yo", "e").replace("ye", "e").replace("q", "k").replace("x", "h")
    return _collapse(word.replace("ts", "s").replace("w", "v"))


def _compile(spec: str) -> tuple[_Entry, ...]:
    entries: list[_Entry] = []
    for raw in spec.split():
        parts = raw.split("_")
        if raw.startswith("*") and raw.endswith("*"):
            mode = "contains"
        elif parts[-1].endswith("*"):
            mode = "prefix"
        else:
            mode = "exact"
        cyrillic = has_cyrillic(raw.casefold())
        fold = _fold_cyrillic if cyrillic else _loose
        folded = tuple(fold(p.strip("*")) for p in parts)
        entries.append(_Entry(parts=folded, mode=mode, label=raw.replace("_", " "), cyrillic=cyrillic))
    return tuple(entries)


@lru_cache(maxsize=1)
def _lists() -> dict[str, tuple[_Entry, ...]]:
    return {
        "abuse": _compile(_ABUSE),
        "harmful": _compile(_HARMFUL),
        "actions": _compile(_HARMFUL_ACTIONS),
        "objects": _compile(_HARMFUL_OBJECTS),
        "spam": _compile(_SPAM_WORDS),
    }


def _words(text: str) -> list[_Word]:
    """Words of ``text`` with obfuscation undone ("F.U.C.K", "fuuuck", "f*ck", "х.у.й" stay findable)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHE_TABLE)
    text = _SPREAD_RE.sub(lambda m: re.sub(r"[\s.\-_*·,]+", "", m.group(0)), text)
    found: list[_Word] = []
    for token in _TOKEN_RE.findall(text):
        token = _INNER_SEPARATORS_RE.sub("", _fix_script(token))
        for piece in re.findall(r"[^\W_]+(?:[*'][^\W_]+)*\**", token):
            masked = piece.replace("*", "#")  # a mask survives folding as "#"
            cyrillic = _fold_cyrillic(masked) if has_cyrillic(piece) else None
            found.append(_Word(cyrillic=cyrillic, latin=_loose(masked)))
    return found


def deobfuscate(text: str) -> list[str]:
    """The loose Latin forms of the words of ``text`` after undoing obfuscation (for logs and tests)."""
    return [word.latin for word in _words(text)]


def _fix_script(token: str) -> str:
    """Undo leetspeak and mixed-script lookalikes inside a word that also has letters (prices stay intact)."""
    letters = [ch for ch in token if ch.isalpha()]
    if not letters:
        return token
    cyrillic = sum(1 for ch in letters if "а" <= ch <= "я" or ch in "ёўқғҳ")
    if cyrillic * 2 >= len(letters) and cyrillic:
        return token.translate(_LEET_CYRILLIC).translate(_CYR_LOOKALIKES)
    if any(ch.isdigit() or ch in "@$!" for ch in token):
        token = token.translate(_LEET_LATIN)
    return token.translate(_LAT_LOOKALIKES) if cyrillic else token


def _word_matches(word: _Word, entry: _Entry, part: str, mode: str) -> bool:
    form = word.cyrillic if entry.cyrillic else word.latin
    if form is None:
        return False
    if "#" in form:
        return _masked_matches(form, part, mode)
    if mode == "exact":
        return form == part
    if mode == "prefix":
        return form.startswith(part)
    return part in form


def _masked_matches(form: str, part: str, mode: str) -> bool:
    """A masked word ("f*ck", "п*здец") matches an entry whose letters fit it with anything under the mask."""
    if sum(ch.isalpha() for ch in form) < 2 or form.count("#") > 2:
        return False
    symbols = ["." if ch == "#" else re.escape(ch) for ch in form.rstrip("#")]
    if mode == "exact":
        return len(symbols) == len(part) and re.fullmatch("".join(symbols), part) is not None
    if mode == "prefix":
        return len(symbols) >= len(part) and re.fullmatch("".join(symbols[: len(part)]), part) is not None
    return any(
        re.fullmatch("".join(symbols[i : i + len(part)]), part) is not None for i in range(len(symbols) - len(part) + 1)
    )


def _find(words: list[_Word], entries: Iterable[_Entry]) -> str | None:
    for entry in entries:
        size = len(entry.parts)
        last = size - 1
        for start in range(len(words) - size + 1):
            if all(
                _word_matches(words[start + i], entry, part, entry.mode if i == last else "exact")
                for i, part in enumerate(entry.parts)
            ):
                return entry.label
    return None


class Guardrails:
    """The content filter. ``extra_words`` lets an owner or admin add blocked words (abuse category)."""

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH, extra_words: Iterable[str] = ()) -> None:
        self.max_length = max_length
        self._extra = _compile(" ".join(w.strip().replace(" ", "_") for w in extra_words if w.strip()))

    def check_inbound(self, text: str, *, language: str | None = None) -> Verdict:
        """Check a customer's message. ``language`` is informational: every list is checked in every language."""
        if len(text) > self.max_length:
            return Verdict(False, GuardReason.TOO_LONG, str(len(text)))
        words = _words(text)
        verdict = self._content(words)
        if verdict is not None:
            return verdict
        spam = _spam(text, words)
        if spam is not None:
            return Verdict(False, GuardReason.SPAM, spam)
        return ALLOW

    def check_outbound(self, text: str, *, language: str | None = None) -> Verdict:
        """Check a model's answer before it reaches the customer (no spam or length rule: answers may link)."""
        verdict = self._content(_words(text))
        return verdict if verdict is not None else ALLOW

    def _content(self, words: list[_Word]) -> Verdict | None:
        lists = _lists()
        matched = _find(words, lists["abuse"]) or _find(words, self._extra)
        if matched:
            return Verdict(False, GuardReason.ABUSE, matched)
        matched = _find(words, lists["harmful"])
        if matched:
            return Verdict(False, GuardReason.HARMFUL, matched)
        action = _find(words, lists["actions"])
        thing = _find(words, lists["objects"]) if action else None
        if action and thing:
            return Verdict(False, GuardReason.HARMFUL, f"{action} + {thing}")
        return None


def _spam(text: str, words: list[_Word]) -> str | None:
    links = len(_URL_RE.findall(text)) + len(_HANDLE_RE.findall(text))
    # Count promotional words of the message, not list entries (one word may match "bonus" in two languages).
    promo = {
        " ".join(w.latin for w in words[start : start + len(entry.parts)])
        for start in range(len(words))
        for entry in _lists()["spam"]
        if _find(words[start : start + len(entry.parts)], (entry,))
    }
    if (links and len(promo) >= 2) or len(promo) >= 3 or links >= 3:
        return ", ".join(sorted(promo)) or "links"
    forms = [w.latin for w in words]
    if len(forms) >= 6:
        most = max(forms.count(f) for f in set(forms))
        if most >= 6 and most * 2 >= len(forms):
            return "repetition"
    if re.search(r"(.)\1{29,}", text):
        return "flood"
    return None
