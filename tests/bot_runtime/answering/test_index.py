"""The lexical index: cross-lingual retrieval, exact tokens, artifact round trip, dense fusion."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence

import pytest

from bot_runtime.answering.chunking import Chunk, ChunkKind, chunk_csv, chunk_document
from bot_runtime.answering.index import ArtifactError, KnowledgeIndex

UZ = """# Yetkazib berish
Toshkent bo'ylab yetkazib berish bepul, buyurtma 2 kun ichida yetkaziladi.

# Kafolat
Barcha mahsulotlarga 12 oy kafolat beriladi.
"""
RU = """# Оплата
Принимаем наличные и карты Uzcard, Humo.
"""
UZ_CYRL = """# Иш вақти
Ҳар куни соат 09:00 дан 21:00 гача ишлаймиз.
"""
EN = """# Contacts
Call us at +998 71 123 45 67 or write to hello@lamp.uz.
"""
PRICES = "sku;name;price\nLM-100;Desk lamp;250000\nLM-200;Floor lamp;1 200 000\n"


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    return [
        *chunk_document(UZ, source_id="uz.md", language="uz"),
        *chunk_document(RU, source_id="ru.md", language="ru"),
        *chunk_document(UZ_CYRL, source_id="uz-cyrl.md", language="uz"),
        *chunk_document(EN, source_id="en.md", language="en"),
        *chunk_csv(PRICES, source_id="prices.csv"),
    ]


@pytest.fixture(scope="module")
def index(chunks: list[Chunk]) -> KnowledgeIndex:
    return KnowledgeIndex.build(chunks)


def top(index: KnowledgeIndex, question: str) -> Chunk:
    hits = index.search(question, k=3)
    assert hits, question
    return hits[0].chunk


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("Доставка бесплатная?", "uz.md"),  # Russian question, Uzbek fact
        ("Какая гарантия?", "uz.md"),
        ("Do you deliver for free?", "uz.md"),  # English question, Uzbek fact
        ("Karta bilan to'lasa bo'ladimi?", "ru.md"),  # Uzbek question, Russian fact
        ("Ish vaqti qanday?", "uz-cyrl.md"),  # Latin question, Cyrillic fact
        ("Соат нечагача ишлайсиз?", "uz-cyrl.md"),
        ("Telefon raqamingiz?", "en.md"),
    ],
)
def test_cross_lingual_and_cross_script_retrieval(index: KnowledgeIndex, question: str, source: str) -> None:
    assert top(index, question).source_id == source


@pytest.mark.parametrize("question", ["LM-200?", "lm200 narxi", "ЛМ-200 цена", "1200000 so'm nima?"])
def test_exact_tokens_find_the_row(index: KnowledgeIndex, question: str) -> None:
    chunk = top(index, question)
    assert chunk.kind is ChunkKind.ROW and "LM-200" in chunk.text


def test_local_phone_number_finds_the_international_one(index: KnowledgeIndex) -> None:
    assert top(index, "123 45 67 kimning raqami?").source_id == "en.md"


def test_scores_are_bounded_and_ordered(index: KnowledgeIndex) -> None:
    hits = index.search("Доставка бесплатная?", k=5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0.0 < h.lexical <= 1.0 for h in hits)
    assert hits[0].confidence > 0.4
    assert index.search("", k=5) == [] and index.search("?!", k=5) == []


def test_unknown_words_lower_confidence(index: KnowledgeIndex) -> None:
    known = index.search("Yetkazib berish bepulmi?", k=1)[0].confidence
    unknown = index.search("Kosmik kema ijarasi bormi?", k=1)
    assert not unknown or unknown[0].confidence < known / 2


def test_artifact_round_trip(index: KnowledgeIndex, chunks: list[Chunk]) -> None:
    blob = index.to_bytes()
    loaded = KnowledgeIndex.from_bytes(blob)
    assert loaded.chunks == tuple(chunks)
    for question in ("Доставка бесплатная?", "LM-200?", "Ish vaqti qanday?"):
        assert loaded.search(question, k=3) == index.search(question, k=3)
    assert not loaded.has_vectors
    assert len(blob) < 20_000


def test_empty_bot_round_trips() -> None:
    empty = KnowledgeIndex.from_bytes(KnowledgeIndex.build([]).to_bytes())
    assert empty.chunks == () and empty.search("Yetkazib berish bormi?") == []


def test_artifact_is_json_not_pickle(index: KnowledgeIndex) -> None:
    document = json.loads(zlib.decompress(index.to_bytes()))
    assert document["format"] == "botfactory.retrieval" and document["version"] == 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=999),
        lambda d: d.update(format="other"),
        lambda d: d["channels"]["words"].update(docs="!!!"),
        lambda d: d["channels"]["exact"].update(terms=[]),
        lambda d: d.pop("chunks"),
    ],
)
def test_bad_artifacts_are_refused(index: KnowledgeIndex, mutate) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(zlib.decompress(index.to_bytes()))
    mutate(document)
    with pytest.raises(ArtifactError):
        KnowledgeIndex.from_bytes(zlib.compress(json.dumps(document).encode()))
    with pytest.raises(ArtifactError):
        KnowledgeIndex.from_bytes(b"\x80\x04not an artifact")


class LetterEmbedder:
    """A toy embedder: letter frequencies (enough to make a synonym-free match measurable)."""

    def embed(self, texts: Sequence[str], task: str) -> list[list[float]]:
        return [[text.lower().count(ch) + 0.01 for ch in "abcdefghijklmnopqrstuvwxyz"] for text in texts]


def test_dense_vectors_are_fused_and_survive_the_artifact(chunks: list[Chunk]) -> None:
    embedder = LetterEmbedder()
    index = KnowledgeIndex.build_with_embedder(chunks, embedder, embedding_model="letters")
    loaded = KnowledgeIndex.from_bytes(index.to_bytes())
    assert loaded.has_vectors and loaded.embedding_model == "letters" and loaded.dimension == 26
    question = "Desk lamp price?"
    vector = embedder.embed([question], "query")[0]
    hits = loaded.search(question, k=3, query_vector=vector)
    assert hits[0].chunk.source_id == "prices.csv"
    assert all(h.dense is not None for h in hits)
    assert hits == index.search(question, k=3, query_vector=vector)
    with pytest.raises(ValueError):
        KnowledgeIndex.build(chunks, vectors=[[1.0]] * (len(chunks) - 1))
