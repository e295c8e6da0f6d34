"""The bench evaluation: our engine must beat the plain rank-bm25 baseline and meet its hit@3 goal."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures() -> dict[str, dict[str, float]]:
    engine, baseline = load_bench("eval").evaluate()
    return {"engine": engine.figures, "baseline": baseline.figures}


def test_question_set_meets_its_spec() -> None:
    bench = load_bench("eval")
    questions = bench.load_questions()
    assert len(questions) >= 60
    assert {q["lang"] for q in questions} == {"uz", "ru", "en"}
    assert sum(not q["in_kb"] for q in questions) >= 5
    assert bench.no_shared_content_word_share(questions, bench.load_kb()) >= 1 / 3


def test_engine_is_not_below_the_rank_bm25_baseline(figures: dict[str, dict[str, float]]) -> None:
    ours, theirs = figures["engine"], figures["baseline"]
    assert ours["hit@1"] >= theirs["hit@1"]
    assert ours["hit@3"] >= theirs["hit@3"]
    assert ours["answer accuracy"] >= theirs["answer accuracy"]
    assert ours["false-answer rate"] <= theirs["false-answer rate"]


def test_engine_meets_the_retrieval_goal(figures: dict[str, dict[str, float]]) -> None:
    assert figures["engine"]["hit@3"] >= 0.9
    assert figures["engine"]["out-of-KB fallback"] > 0


def test_guardrails_bench_blocks_no_shop_question() -> None:
    result = load_bench("guardrails_bench").run()
    assert result["blocked_questions"] == []
    assert all(row["messages"] >= 30 for key, row in result["figures"].items() if key != "all")
    assert all(row["ok blocked"] == 0 for row in result["figures"].values())
    assert result["figures"]["all"]["recall"] >= 0.8
