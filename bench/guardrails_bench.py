"""Guardrails precision and recall per language on labelled messages (`make bench`).

bench/guardrails_messages.jsonl holds at least 30 labelled messages per language (label ok | abuse | spam |
harmful). A message counts as caught when the filter blocks it; precision and recall are for "should be blocked".
It also runs every customer question of bench/questions.jsonl through the filter and fails if any is blocked:
an ordinary shop question must never be refused.
Run: .venv/bin/python bench/guardrails_bench.py
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot_runtime.answering.guardrails import Guardrails  # noqa: E402

MESSAGES = ROOT / "bench" / "guardrails_messages.jsonl"
QUESTIONS = ROOT / "bench" / "questions.jsonl"


def load(path: Path) -> list[dict[str, Any]]:
    """JSON lines of ``path``."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run() -> dict[str, Any]:
    """Figures per language and overall, plus the shop questions and labelled 'ok' messages that were blocked."""
    guard = Guardrails()
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "n": 0})
    mistakes: list[str] = []
    for message in load(MESSAGES):
        verdict = guard.check_inbound(message["text"], language=message["lang"])
        should_block = message["label"] != "ok"
        blocked = not verdict.allowed
        for key in (message["lang"], "all"):
            bucket = counts[key]
            bucket["n"] += 1
            bucket["tp" if should_block and blocked else "fn" if should_block else "fp" if blocked else "tn"] += 1
        if should_block != blocked:
            mistakes.append(
                f"{message['lang']} {message['label']:8} -> {verdict.reason or 'allowed'}: {message['text']}"
            )
    blocked_questions = [q["question"] for q in load(QUESTIONS) if not guard.check_inbound(q["question"]).allowed]
    figures = {
        key: {
            "messages": c["n"],
            "precision": round(c["tp"] / (c["tp"] + c["fp"]), 3) if c["tp"] + c["fp"] else 1.0,
            "recall": round(c["tp"] / (c["tp"] + c["fn"]), 3) if c["tp"] + c["fn"] else 1.0,
            "ok blocked": c["fp"],
        }
        for key, c in sorted(counts.items())
    }
    return {"figures": figures, "mistakes": mistakes, "blocked_questions": blocked_questions}


def main() -> int:
    result = run()
    print(f"{'':6}{'messages':>10}{'precision':>11}{'recall':>8}{'ok blocked':>12}")
    for key, row in result["figures"].items():
        print(f"{key:6}{row['messages']:>10}{row['precision']:>11.3f}{row['recall']:>8.3f}{row['ok blocked']:>12}")
    for line in result["mistakes"]:
        print("  miss:", line)
    print(f"shop questions blocked: {len(result['blocked_questions'])}")
    for question in result["blocked_questions"]:
        print("  BLOCKED:", question)
    assert not result["blocked_questions"], "an ordinary shop question was blocked"
    assert all(row["ok blocked"] == 0 for row in result["figures"].values()), "an ordinary message was blocked"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
