"""Retrieval latency on a synthetic bot with 5,000 chunks: our index beside rank-bm25, in the same run.

The synthetic knowledge base mixes Uzbek (Latin and Cyrillic), Russian and English pseudo-text with a Zipf word
distribution, SKUs and prices, at typical chunk length. Queries are drawn from chunk words, some inflected, so both
systems do real work. Prints p50 / p95 per query (target for ours: p95 <= 20 ms), plus build time, artifact size
and load time. Run: .venv/bin/python bench/retrieval_bench.py [--chunks 5000] [--queries 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rank_bm25 import BM25Okapi  # noqa: E402

from bot_runtime.answering.chunking import Chunk, ChunkKind  # noqa: E402
from bot_runtime.answering.index import KnowledgeIndex  # noqa: E402

_LATIN_SYLLABLES = (
    "ba be bi bo bu da di do qa qo ka ki ko la li lo ma mi mo na ni no ra ri ro sa si so ta ti to ya yo".split()
)
_CYRILLIC_SYLLABLES = (
    "ба бе би бо да ди до ка ки ко ла ли ло ма ми мо на ни но ра ри ро са си со та ти то ва во".split()
)
_UZ_SUFFIXES = ["", "", "lar", "ga", "da", "ni", "ning", "dan", "lari"]
_RU_SUFFIXES = ["", "", "а", "ы", "ов", "ом", "ами", "е"]


def _vocabulary(rng: random.Random, size: int, syllables: list[str]) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def synthetic_chunks(count: int, seed: int = 7) -> list[Chunk]:
    """``count`` chunks of 30-90 words in uz / ru / en with SKUs and prices."""
    rng = random.Random(seed)
    latin = _vocabulary(rng, 6000, _LATIN_SYLLABLES)
    cyrillic = _vocabulary(rng, 4000, _CYRILLIC_SYLLABLES)
    weights_latin = [1.0 / (rank + 1) for rank in range(len(latin))]
    weights_cyrillic = [1.0 / (rank + 1) for rank in range(len(cyrillic))]
    chunks = []
    for position in range(count):
        language = rng.choice(["uz", "ru", "en"])
        pool, weights, suffixes = (
            (cyrillic, weights_cyrillic, _RU_SUFFIXES) if language == "ru" else (latin, weights_latin, _UZ_SUFFIXES)
        )
        words = [w + rng.choice(suffixes) for w in rng.choices(pool, weights, k=rng.randint(30, 90))]
        words.insert(
            rng.randrange(len(words)), f"{rng.choice('ABCDKMST')}{rng.choice('VRHTL')}-{rng.randint(100, 9999)}"
        )
        words.insert(rng.randrange(len(words)), f"{rng.randint(1, 99) * 50_000:,}".replace(",", " "))
        text = " ".join(words).capitalize() + "."
        kind = ChunkKind.ROW if position % 10 == 0 else ChunkKind.TEXT
        chunks.append(Chunk(f"src{position // 20}", f"Section {position % 20}", position, text, kind, language))
    return chunks


def synthetic_queries(chunks: list[Chunk], count: int, seed: int = 11) -> list[str]:
    """Questions made of 2-6 words of a random chunk, sometimes with an SKU or a changed ending."""
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        words = rng.choice(chunks).text.rstrip(".").split()
        picked = rng.sample(words, k=min(len(words), rng.randint(2, 6)))
        if rng.random() < 0.3:
            picked = [w[:-1] + "lari" if len(w) > 4 else w for w in picked]
        queries.append(" ".join(picked) + "?")
    return queries


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv)
    chunks = synthetic_chunks(args.chunks)
    queries = synthetic_queries(chunks, args.queries)

    started = time.perf_counter()
    index = KnowledgeIndex.build(chunks)
    build_seconds = time.perf_counter() - started
    artifact = index.to_bytes()
    started = time.perf_counter()
    index = KnowledgeIndex.from_bytes(artifact)
    load_seconds = time.perf_counter() - started

    bm25 = BM25Okapi([f"{c.title}\n{c.text}".lower().split() for c in chunks])

    ours: list[float] = []
    theirs: list[float] = []
    for query in queries[:20]:  # warm caches (stemmer, lexicon) the way a running bot has them
        index.search(query, k=5)
    for query in queries:
        started = time.perf_counter()
        index.search(query, k=5)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        scores = bm25.get_scores(query.lower().split())
        sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:5]
        theirs.append(time.perf_counter() - started)

    our_p50, our_p95 = percentiles(ours)
    bm_p50, bm_p95 = percentiles(theirs)
    print(f"synthetic bot: {len(chunks)} chunks, {len(queries)} queries")
    print(
        f"index build {build_seconds:.2f} s, artifact {len(artifact) / 1024:.0f} KiB, load {load_seconds * 1000:.0f} ms"
    )
    print(f"{'':12}{'p50 ms':>10}{'p95 ms':>10}")
    print(f"{'engine':12}{our_p50:>10.2f}{our_p95:>10.2f}")
    print(f"{'rank-bm25':12}{bm_p50:>10.2f}{bm_p95:>10.2f}")
    target = "met" if our_p95 <= 20 else "MISSED"
    print(f"target p95 <= 20 ms: {target}")
    return 0 if our_p95 <= 20 else 1


if __name__ == "__main__":
    raise SystemExit(main())
