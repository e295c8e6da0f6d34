"""Turn text into retrieval features: word-stem keys with concepts, character n-grams and exact tokens.

Documents and queries go through the same steps so that keys meet. A query is kept as a list of *units*, one per
content word, each with its alternative keys (stems, concepts): a unit counts once however many of its keys match,
which lets the fallback threshold read the score as "how much of the question the passage covers".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from bot_runtime.answering.lexicon import concepts_for_word, phrase_concepts
from bot_runtime.answering.text import (
    UZ_CYRILLIC_LETTERS,
    canonical,
    char_ngrams,
    exact_tokens,
    has_cyrillic,
    is_stop_word,
    normalize,
    stem,
    words,
)

CONCEPT_PREFIX = "@"


@dataclass(frozen=True, slots=True)
class QueryUnit:
    """One content word (or a phrase concept) of a query with the keys that may match it."""

    word: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QueryFeatures:
    """Everything the index needs to score a query."""

    units: tuple[QueryUnit, ...]
    ngrams: frozenset[str]
    exact: tuple[str, ...]
    language: str | None

    @property
    def empty(self) -> bool:
        """True when the query has nothing to match on (only stop-words or punctuation)."""
        return not self.units and not self.exact and not self.ngrams


@dataclass(frozen=True, slots=True)
class DocumentFeatures:
    """Term counts of one chunk per channel."""

    terms: Counter[str]
    ngrams: Counter[str]
    exact: Counter[str]
    length: int


@lru_cache(maxsize=200_000)
def stems_for(word: str, language: str | None) -> tuple[str, ...]:
    """Stem keys of one normalised word; a Latin word of unknown language gets both its English and Uzbek stems."""
    if has_cyrillic(word):
        if UZ_CYRILLIC_LETTERS & set(word) or language == "uz":
            return (stem(word, "uz"),)
        return (stem(word, "ru"),)
    if language in ("en", "uz"):
        return (stem(word, language),)
    english, uzbek = stem(word, "en"), stem(word, "uz")
    return (english,) if english == uzbek else (english, uzbek)


def _word_concepts(tokens: list[str], canon: list[str]) -> tuple[list[set[str]], list[tuple[int, int, str]]]:
    """Concepts per word position, plus the phrases found ("how much", "bo'lib to'lash") as (start, end, concept)."""
    per_word: list[set[str]] = [set(concepts_for_word(w)) for w in canon]
    return per_word, phrase_concepts(canon, [is_stop_word(w) for w in tokens])


def analyze_document(text: str, language: str | None) -> DocumentFeatures:
    """Features of a chunk (title included by the caller)."""
    norm = normalize(text)
    tokens = words(norm)
    canon = [canonical(w) for w in tokens]
    per_word, phrases = _word_concepts(tokens, canon)
    terms: Counter[str] = Counter()
    ngrams: Counter[str] = Counter()
    length = 0
    for word, key, concepts in zip(tokens, canon, per_word, strict=True):
        for concept in concepts:
            terms[CONCEPT_PREFIX + concept] += 1
        if is_stop_word(word):
            continue
        length += 1
        for term in stems_for(word, language):
            terms[term] += 1
        if len(key) >= 3:
            for gram in char_ngrams(key):
                ngrams[gram] += 1
    for _, _, concept in phrases:
        terms[CONCEPT_PREFIX + concept] += 1
    exact = Counter(exact_tokens(norm))
    return DocumentFeatures(terms=terms, ngrams=ngrams, exact=exact, length=max(length, 1))


def analyze_query(text: str, language: str | None) -> QueryFeatures:
    """Features of a question: one unit per content word or phrase ("сколько стоит", "bo'lib to'lash")."""
    norm = normalize(text)
    tokens = words(norm)
    canon = [canonical(w) for w in tokens]
    per_word, phrases = _word_concepts(tokens, canon)
    # A phrase means more than its words ("interest-free" is not "free"): its words form one unit, its concept.
    consumed: dict[int, str] = {}
    for start, end, concept in phrases:
        for position in range(start, end):
            consumed.setdefault(position, concept)
    units: list[QueryUnit] = []
    seen: set[tuple[str, ...]] = set()
    ngrams: set[str] = set()
    for position, (word, key, concepts) in enumerate(zip(tokens, canon, per_word, strict=True)):
        if position in consumed:
            keys: tuple[str, ...] = (CONCEPT_PREFIX + consumed[position],)
        elif is_stop_word(word):
            continue
        else:
            concept_keys = tuple(sorted(CONCEPT_PREFIX + c for c in concepts))
            keys = tuple(dict.fromkeys((*stems_for(word, language), *concept_keys)))
        if keys not in seen:
            seen.add(keys)
            units.append(QueryUnit(word=word, keys=keys))
        if len(key) >= 3 and not is_stop_word(word):
            ngrams.update(char_ngrams(key))
    return QueryFeatures(
        units=tuple(units),
        ngrams=frozenset(ngrams),
        exact=tuple(exact_tokens(norm)),
        language=language,
    )
