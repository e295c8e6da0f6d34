"""Answer-quality evaluation on the bench business (`make eval`): our engine beside a plain rank-bm25 baseline.

Both columns use the same chunks of bench/kb. Printed per column: retrieval hit@1 / hit@3 over the questions the
knowledge base answers, answer accuracy (a correct answer holds every key fact; an out-of-KB question is correct
only when it gets the fallback), false-answer rate (share of all questions that got a non-fallback answer that is
wrong: the bot "making things up") and how many out-of-KB questions got the fallback.

bench/questions.jsonl was written before the engine existed and is not edited to suit it.
Run: .venv/bin/python bench/eval.py [--verbose] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rank_bm25 import BM25Okapi  # noqa: E402

from bot_runtime.answering.chunking import Chunk, ChunkKind, chunk_csv, chunk_document  # noqa: E402
from bot_runtime.answering.index import KnowledgeIndex  # noqa: E402
from bot_runtime.answering.langdetect import detect_language  # noqa: E402
from bot_runtime.answering.offline import OfflineAnswerer  # noqa: E402
from bot_runtime.answering.text import APOSTROPHES  # noqa: E402

KB_DIR = ROOT / "bench" / "kb"
QUESTIONS = ROOT / "bench" / "questions.jsonl"
_FOLDER_LANGUAGE = {"en": "en", "ru": "ru", "uz": "uz", "uz-cyrl": "uz"}


def load_kb(root: Path = KB_DIR) -> list[Chunk]:
    """Chunk every file of the bench knowledge base; source ids are paths relative to ``root``."""
    chunks: list[Chunk] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        source_id = path.relative_to(root).as_posix()
        language = _FOLDER_LANGUAGE.get(path.parent.name) if path.parent != root else None
        if path.suffix == ".csv":
            chunks.extend(chunk_csv(path.read_bytes(), source_id=source_id, language=language))
        else:
            chunks.extend(chunk_document(path.read_text(encoding="utf-8"), source_id=source_id, language=language))
    return chunks


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    """The labelled questions, one JSON object per line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fact_form(text: str) -> str:
    """Compare facts loosely: casefold, one apostrophe and dash, digit groups joined ("3 000 000" = "3,000,000")."""
    text = text.casefold()
    for apostrophe in APOSTROPHES:
        text = text.replace(apostrophe, "'")
    text = re.sub(r"[‐‑‒–—―−]", "-", text)
    return re.sub(r"(?<=\d)[\s,\u00a0\u202f](?=\d)", "", text)


def is_relevant(question: dict[str, Any], chunk: Chunk) -> bool:
    """A chunk answers a question when it comes from a gold source and holds that gold source's marker."""
    return any(
        chunk.source_id == gold["source"] and fact_form(gold["contains"]) in fact_form(chunk.text)
        for gold in question["gold"]
    )


def has_facts(question: dict[str, Any], answer: str) -> bool:
    """Every key fact (any of its alternatives) appears in the answer."""
    form = fact_form(answer)
    return all(any(fact_form(alt) in form for alt in alternatives) for alternatives in question["facts"])


@dataclass(slots=True)
class Outcome:
    """What one system did with one question."""

    question: dict[str, Any]
    retrieved: list[Chunk]
    answer: str
    fallback: bool

    @property
    def hit1(self) -> bool:
        return bool(self.retrieved) and is_relevant(self.question, self.retrieved[0])

    @property
    def hit3(self) -> bool:
        return any(is_relevant(self.question, chunk) for chunk in self.retrieved[:3])

    @property
    def correct(self) -> bool:
        if not self.question["in_kb"]:
            return self.fallback
        return not self.fallback and has_facts(self.question, self.answer)

    @property
    def false_answer(self) -> bool:
        return not self.fallback and not self.correct


@dataclass(slots=True)
class Report:
    """Figures of one system over the question set."""

    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    def _share(self, values: Sequence[bool]) -> float:
        return round(sum(values) / len(values), 3) if values else 0.0

    @property
    def figures(self) -> dict[str, float]:
        in_kb = [o for o in self.outcomes if o.question["in_kb"]]
        out_kb = [o for o in self.outcomes if not o.question["in_kb"]]
        return {
            "hit@1": self._share([o.hit1 for o in in_kb]),
            "hit@3": self._share([o.hit3 for o in in_kb]),
            "answer accuracy": self._share([o.correct for o in self.outcomes]),
            "false-answer rate": self._share([o.false_answer for o in self.outcomes]),
            "out-of-KB fallback": self._share([o.fallback for o in out_kb]),
            "in-KB fallback": self._share([o.fallback for o in in_kb]),
        }


Answerer = Callable[[dict[str, Any]], Outcome]


def engine_system(chunks: Sequence[Chunk], threshold: float | None = None) -> Answerer:
    """Our index (round-tripped through its artifact, as the runtime loads it) + the offline answerer."""
    index = KnowledgeIndex.from_bytes(KnowledgeIndex.build(chunks).to_bytes())
    answerer = OfflineAnswerer() if threshold is None else OfflineAnswerer(threshold=threshold)

    def run(question: dict[str, Any]) -> Outcome:
        language = detect_language(question["question"])
        hits = index.search(question["question"], k=5, language=language)
        result = answerer.answer(question["question"], hits, language=language)
        return Outcome(question, [h.chunk for h in hits], result.text, result.fallback)

    return run


_TOKEN_RE = re.compile(r"\w+")


def bm25_tokens(text: str) -> list[str]:
    """The plain tokenisation a rank-bm25 user writes: lower case, word characters."""
    return _TOKEN_RE.findall(text.lower())


def baseline_system(chunks: Sequence[Chunk]) -> Answerer:
    """rank-bm25 (BM25Okapi) over the same chunk texts; answers with the top chunk when any term matched."""
    bm25 = BM25Okapi([bm25_tokens(f"{c.title}\n{c.text}") for c in chunks])

    def run(question: dict[str, Any]) -> Outcome:
        scores = bm25.get_scores(bm25_tokens(question["question"]))
        order = sorted(range(len(chunks)), key=lambda i: scores[i], reverse=True)[:5]
        retrieved = [chunks[i] for i in order if scores[i] > 0]
        if not retrieved:
            return Outcome(question, [], "", True)
        top = retrieved[0]
        return Outcome(question, retrieved, top.answer if top.kind is ChunkKind.FAQ else top.text, False)

    return run


def evaluate(chunks: Sequence[Chunk] | None = None, questions: Sequence[dict[str, Any]] | None = None) -> list[Report]:
    """Run both systems over the question set; returns [engine report, baseline report]."""
    chunks = load_kb() if chunks is None else chunks
    questions = load_questions() if questions is None else questions
    reports = []
    for name, factory in (("engine", engine_system), ("rank-bm25", baseline_system)):
        system = factory(chunks)
        reports.append(Report(name, [system(q) for q in questions]))
    return reports


def no_shared_content_word_share(questions: Sequence[dict[str, Any]], chunks: Sequence[Chunk]) -> float:
    """Share of questions with no content word (surface form, stop-words and words under 3 letters aside) in the KB."""
    from bot_runtime.answering.text import is_stop_word, normalize, words

    vocabulary = {w for c in chunks for w in words(normalize(f"{c.title} {c.text}"))}
    count = 0
    for question in questions:
        content = [w for w in words(normalize(question["question"])) if not is_stop_word(w) and len(w) > 2]
        count += not any(w in vocabulary for w in content)
    return round(count / len(questions), 3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list the questions each system got wrong")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--sweep", action="store_true", help="print accuracy / false answers per fallback threshold")
    args = parser.parse_args(argv)
    chunks = load_kb()
    questions = load_questions()
    engine, baseline = evaluate(chunks, questions)
    if args.json:
        print(json.dumps({r.name: r.figures for r in (engine, baseline)}, indent=2))
        return 0
    in_kb = sum(1 for q in questions if q["in_kb"])
    print(
        f"bench: {len(chunks)} chunks, {len(questions)} questions ({in_kb} in the KB, {len(questions) - in_kb} outside)"
    )
    print(f"questions sharing no content word with the KB: {no_shared_content_word_share(questions, chunks):.0%}")
    print(f"{'':22}{'engine':>10}{'rank-bm25':>12}")
    for key, value in engine.figures.items():
        print(f"{key:22}{value:>10.3f}{baseline.figures[key]:>12.3f}")
    if args.sweep:
        print(f"\n{'threshold':>10}{'accuracy':>10}{'false':>8}{'acc-false':>11}")
        for step in range(5, 55, 5):
            system = engine_system(chunks, threshold=step / 100)
            figures = Report("engine", [system(q) for q in questions]).figures
            accuracy, false = figures["answer accuracy"], figures["false-answer rate"]
            print(f"{step / 100:>10.2f}{accuracy:>10.3f}{false:>8.3f}{accuracy - false:>11.3f}")
    if args.verbose:
        for report in (engine, baseline):
            print(f"\n{report.name}: wrong answers")
            for outcome in report.outcomes:
                if not outcome.correct:
                    top = outcome.retrieved[0].chunk_id if outcome.retrieved else "-"
                    kind = "FALLBACK" if outcome.fallback else "WRONG"
                    print(f"  {outcome.question['id']:6} {kind:8} top={top:22} {outcome.question['question']}")
                    if not outcome.fallback:
                        print(f"         -> {outcome.answer[:150]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
