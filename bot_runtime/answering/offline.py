"""The offline answerer: answers from retrieved passages without any model, or says it doesn't know.

It stands in when a bot has no provider key or its provider fails, so it must never invent anything: it returns a
Q&A pair's answer, a price-list row, or the passage sentences that best match the question, preferring the
version of the fact in the customer's language (and script), and the bot's fallback message when retrieval is not
confident enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot_runtime.answering.analysis import QueryFeatures, analyze_document, analyze_query
from bot_runtime.answering.chunking import ChunkKind
from bot_runtime.answering.index import SearchHit
from bot_runtime.answering.schemas import AnswerResult
from bot_runtime.answering.text import iter_sentences, normalize, script_of, to_script, words
from bot_runtime.i18n import gettext as _
from bot_runtime.i18n import use_locale

PROVIDER_NAME = "offline"
# Share of the question (idf-weighted) a passage must cover before we answer from it. Chosen on the bench set
# (bench/eval.py prints the trade-off); below it a fact-free fallback beats a confident wrong answer.
DEFAULT_THRESHOLD = 0.2
# A passage in the customer's language is preferred when it scores at least this share of the best one.
SAME_LANGUAGE_RATIO = 0.85
SHORT_PASSAGE = 420

_GREETINGS = frozenset(
    """hi hello hey salom assalomu alaykum assalom привет здравствуйте здравствуй добрый день вечер утро
    good morning evening afternoon хаюшки""".split()
)
_THANKS = frozenset("""thanks thank you thx rahmat raxmat tashakkur спасибо благодарю спс""".split())
_CYRILLIC_SMALL_TALK = {"салом": "salom", "ассалому": "assalomu", "алайкум": "alaykum", "раҳмат": "rahmat"}


def default_fallback_message() -> str:
    """The translated fallback text used when a bot has not set its own."""
    return _("Sorry, I don't have an answer to that yet. Please rephrase your question or contact us directly.")


@dataclass(frozen=True, slots=True)
class OfflineAnswerer:
    """Answers from passages with no model. ``threshold`` is the minimum retrieval confidence to answer at all."""

    threshold: float = DEFAULT_THRESHOLD
    max_sentences: int = 3

    def answer(
        self,
        question: str,
        hits: Sequence[SearchHit],
        *,
        language: str | None,
        fallback_message: str = "",
    ) -> AnswerResult:
        """Answer ``question`` from ``hits`` (best first) in ``language``, or return the fallback."""
        with use_locale(language):
            small_talk = _small_talk_reply(question)
            if small_talk is not None:
                return AnswerResult(text=small_talk, provider=PROVIDER_NAME, language=language, passages=tuple(hits))
            confident = [hit for hit in hits if hit.confidence >= self.threshold]
            if not confident:
                return AnswerResult(
                    text=fallback_message or default_fallback_message(),
                    fallback=True,
                    provider=PROVIDER_NAME,
                    language=language,
                    passages=tuple(hits),
                )
        primary = _pick_primary(confident, language)
        features = analyze_query(question, language)
        text = self._compose(primary, features)
        question_script = script_of(question)
        if language == "uz" and question_script and primary.chunk.language == "uz":
            # An Uzbek fact written in the other script is shown in the customer's script.
            text = to_script(text, question_script)
        return AnswerResult(
            text=text,
            source_ids=(primary.chunk.source_id,),
            provider=PROVIDER_NAME,
            language=language,
            passages=tuple(hits),
        )

    def _compose(self, hit: SearchHit, features: QueryFeatures) -> str:
        chunk = hit.chunk
        if chunk.kind is ChunkKind.FAQ:
            return chunk.answer
        if chunk.kind is ChunkKind.ROW or len(chunk.text) <= SHORT_PASSAGE:
            return chunk.text
        sentences = list(iter_sentences(chunk.text))
        scored = [(_sentence_score(sentence, features, chunk.language), i) for i, sentence in enumerate(sentences)]
        best = max(score for score, _ in scored)
        if best <= 0:
            return " ".join(sentences[: self.max_sentences])
        chosen = sorted(i for score, i in sorted(scored, reverse=True)[: self.max_sentences] if score >= 0.5 * best)
        return " ".join(sentences[i] for i in chosen)


def _pick_primary(hits: Sequence[SearchHit], language: str | None) -> SearchHit:
    top = hits[0]
    # Table rows carry no language of their own (a price list names items in several): keep the best one.
    if language is None or top.chunk.language in (language, None):
        return top
    for hit in hits[1:]:
        # Either measure will do: a translation of the same fact can cover the question's words less well (its
        # terms reached the index through transliteration or the lexicon) while ranking just as high.
        close = hit.confidence >= SAME_LANGUAGE_RATIO * top.confidence or hit.score >= SAME_LANGUAGE_RATIO * top.score
        if hit.chunk.language == language and close:
            return hit
    return top


def _sentence_score(sentence: str, features: QueryFeatures, language: str | None) -> float:
    doc = analyze_document(sentence, language)
    score = 0.0
    for unit in features.units:
        if any(key in doc.terms for key in unit.keys):
            score += 1.0
    score += 2.0 * sum(1 for token in features.exact if token in doc.exact)
    return score


def _small_talk_reply(question: str) -> str | None:
    """A reply for a bare greeting or thank-you, which is not a question for the knowledge base."""
    tokens = [_CYRILLIC_SMALL_TALK.get(w, w) for w in words(normalize(question))]
    if not tokens or len(tokens) > 4:
        return None
    if all(t in _THANKS for t in tokens):
        return _("You're welcome! Anything else I can help with?")
    if all(t in _GREETINGS for t in tokens):
        return _("Hello! How can I help you?")
    return None
