"""Per-bot hybrid retrieval index and its serialised form, the retrieval artifact that ingestion publishes to Redis.

Three lexical channels are scored BM25-style from precomputed postings: word stems + generic concepts and exact
tokens (SKUs, phones, prices) share the question; character n-grams (morphology, typos, transliteration drift) then
fill part of what those left unexplained. Dense vectors, when an embedder produced them at ingestion, are fused with
the lexical ranking by reciprocal rank (RRF).

Scores are normalised per query to [0, 1] ("how much of the question the passage covers"), so one threshold works
for every bot. The artifact is JSON + base64 arrays, zlib-compressed: compact, fast to load, never unpickled.
"""

from __future__ import annotations

import base64
import heapq
import json
import math
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot_runtime.answering.analysis import CONCEPT_PREFIX, QueryFeatures, analyze_document, analyze_query
from bot_runtime.answering.chunking import Chunk, ChunkKind
from bot_runtime.answering.langdetect import detect_language

ARTIFACT_FORMAT = "botfactory.retrieval"
ARTIFACT_VERSION = 1

K1 = 1.2
B = 0.75
# Concepts are broader than words: a concept-only match is worth a bit less than the word itself.
CONCEPT_WEIGHT = 0.8
# N-grams can only raise a score (toward 1 by this share of what words and exact tokens left unexplained): they
# rescue inflected, misspelt or transliterated words but must not drag down a clean word match.
NGRAM_SHARE = 0.5
# An n-gram found in many chunks says nothing about any one of them, and walking its postings is what makes a large
# bot slow: skip n-grams in more than 20% of chunks on small bots, more than max(50, 3%) on large ones.
NGRAM_MAX_DF = 0.2
NGRAM_MIN_DF_LIMIT = 50
NGRAM_MIN_DF_SHARE = 0.03
# A chunk in the customer's language wins a near-tie with the same fact in another language.
LANGUAGE_BOOST = 0.08
RRF_K = 60
# Cosine similarity below which a dense match means nothing (typical of modern text embedders).
DENSE_FLOOR = 0.55
_QUANT = 255
# Saturated term frequency is stored relative to one occurrence in an average-length chunk (= 1.0), up to K1 + 1.
_TF_MAX = K1 + 1.0
_SCALE = _TF_MAX / _QUANT


class ArtifactError(ValueError):
    """The bytes are not a retrieval artifact this code can read (wrong format, version or corrupted)."""


class Embedder(Protocol):
    """Turns texts into dense vectors; ``task`` is 'document' at ingestion and 'query' at question time."""

    def embed(self, texts: Sequence[str], task: str) -> list[list[float]]:
        """Return one vector per text, all of the same dimension."""
        ...


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One retrieved chunk.

    ``score`` orders hits (BM25-style, or RRF when vectors were used); ``lexical`` is the share of the question the
    chunk covers, in [0, 1]; ``dense`` is the cosine similarity when vectors were used.
    """

    chunk: Chunk
    score: float
    lexical: float
    dense: float | None = None

    @property
    def confidence(self) -> float:
        """How sure retrieval is that this chunk answers the question, in [0, 1] (see the offline threshold)."""
        if self.dense is None:
            return self.lexical
        return max(self.lexical, (self.dense - DENSE_FLOOR) / (1.0 - DENSE_FLOOR))


def _to_le_bytes(values: array) -> bytes:
    if sys.byteorder == "big" and values.itemsize > 1:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_le_bytes(typecode: str, data: bytes) -> array:
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder == "big" and values.itemsize > 1:
        values.byteswap()
    return values


def _encode(values: array) -> str:
    return base64.b64encode(_to_le_bytes(values)).decode("ascii")


def _decode(typecode: str, data: str) -> array:
    try:
        return _from_le_bytes(typecode, base64.b64decode(data, validate=True))
    except (ValueError, TypeError) as exc:
        raise ArtifactError("corrupted array in retrieval artifact") from exc


class _Channel:
    """Postings of one feature channel: term -> (doc ids, quantised saturated term frequencies)."""

    __slots__ = ("terms", "offsets", "docs", "weights", "idf", "max_idf", "n_docs")

    def __init__(self, terms: list[str], offsets: array, docs: array, weights: array, idf: array, n_docs: int) -> None:
        self.terms = {term: i for i, term in enumerate(terms)}
        self.offsets = offsets
        self.docs = docs
        self.weights = weights
        self.idf = idf
        self.n_docs = n_docs
        # What a term never seen in this bot weighs: as much as the rarest term (df = 1).
        self.max_idf = math.log(1.0 + (n_docs - 1 + 0.5) / 1.5) if n_docs else 1.0

    @classmethod
    def build(cls, per_doc: Sequence[Counter[str]], lengths: Sequence[int]) -> _Channel:
        n_docs = len(per_doc)
        avg = (sum(lengths) / n_docs) if n_docs else 1.0
        postings: dict[str, tuple[list[int], list[int]]] = {}
        quant = _QUANT / _TF_MAX
        for doc_id, counts in enumerate(per_doc):
            norm = K1 * (1.0 - B + B * lengths[doc_id] / avg)
            for term, tf in counts.items():
                # BM25 saturation, 1.0 = one occurrence in a chunk of average length, quantised to a byte.
                level = int(tf * (K1 + 1.0) / (tf + norm) * quant + 0.5)
                entry = postings.get(term)
                if entry is None:
                    entry = postings[term] = ([], [])
                entry[0].append(doc_id)
                entry[1].append(level if 0 < level <= _QUANT else (1 if level < 1 else _QUANT))
        terms = sorted(postings)
        offsets = array("I", [0])
        docs = array(_doc_typecode(n_docs))
        weights = array("B")
        idf = array("f")
        for term in terms:
            doc_ids, levels = postings[term]
            docs.fromlist(doc_ids)
            weights.fromlist(levels)
            offsets.append(len(docs))
            idf.append(math.log(1.0 + (n_docs - len(doc_ids) + 0.5) / (len(doc_ids) + 0.5)))
        return cls(terms, offsets, docs, weights, idf, n_docs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "terms": list(self.terms),
            "offsets": _encode(self.offsets),
            "doc_type": self.docs.typecode,
            "docs": _encode(self.docs),
            "weights": _encode(self.weights),
            "idf": _encode(self.idf),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], n_docs: int) -> _Channel:
        try:
            terms = [str(t) for t in data["terms"]]
            offsets = _decode("I", data["offsets"])
            doc_type = data.get("doc_type", "I")
            if doc_type not in ("H", "I"):
                raise ArtifactError("retrieval artifact has an unknown array type")
            docs = _decode(doc_type, data["docs"])
            weights = _decode("B", data["weights"])
            idf = _decode("f", data["idf"])
        except (KeyError, TypeError) as exc:
            raise ArtifactError("retrieval artifact channel is incomplete") from exc
        if (
            len(offsets) != len(terms) + 1
            or len(idf) != len(terms)
            or len(docs) != len(weights)
            or (offsets and offsets[-1] != len(docs))
            or (docs and max(docs) >= n_docs)
        ):
            raise ArtifactError("retrieval artifact channel is inconsistent")
        return cls(terms, offsets, docs, weights, idf, n_docs)


class KnowledgeIndex:
    """The searchable knowledge of one bot: built at ingestion, shipped as :meth:`to_bytes`, loaded by the runtime."""

    def __init__(
        self,
        chunks: Sequence[Chunk],
        channels: dict[str, _Channel],
        vectors: array | None = None,
        dimension: int = 0,
        embedding_model: str | None = None,
    ) -> None:
        self.chunks: tuple[Chunk, ...] = tuple(chunks)
        self._channels = channels
        self._vectors = vectors
        self.dimension = dimension
        self.embedding_model = embedding_model
        self._matrix: Any = None

    @property
    def has_vectors(self) -> bool:
        """True when the artifact carries dense vectors (query with ``query_vector`` to use them)."""
        return self._vectors is not None and self.dimension > 0

    @classmethod
    def build(
        cls,
        chunks: Sequence[Chunk],
        *,
        vectors: Sequence[Sequence[float]] | None = None,
        embedding_model: str | None = None,
    ) -> KnowledgeIndex:
        """Index ``chunks``; ``vectors`` (one per chunk, from an :class:`Embedder`) enable dense retrieval."""
        features = [analyze_document(_index_text(chunk), chunk.language) for chunk in chunks]
        channels = {
            "words": _Channel.build([f.terms for f in features], [f.length for f in features]),
            "ngrams": _Channel.build([f.ngrams for f in features], [max(1, sum(f.ngrams.values())) for f in features]),
            "exact": _Channel.build([f.exact for f in features], [max(1, sum(f.exact.values())) for f in features]),
        }
        packed: array | None = None
        dimension = 0
        if vectors is not None:
            if len(vectors) != len(chunks):
                raise ValueError("one vector per chunk is required")
            dimension = len(vectors[0]) if vectors else 0
            packed = array("f")
            for vector in vectors:
                if len(vector) != dimension:
                    raise ValueError("all vectors must have the same dimension")
                packed.extend(_unit(vector))
        return cls(chunks, channels, packed, dimension, embedding_model)

    @classmethod
    def build_with_embedder(
        cls, chunks: Sequence[Chunk], embedder: Embedder, *, embedding_model: str | None = None, batch: int = 64
    ) -> KnowledgeIndex:
        """Index ``chunks`` and embed them with ``embedder`` in batches (ingestion side)."""
        vectors: list[list[float]] = []
        texts = [_index_text(chunk) for chunk in chunks]
        for start in range(0, len(texts), batch):
            vectors.extend(embedder.embed(texts[start : start + batch], "document"))
        return cls.build(chunks, vectors=vectors, embedding_model=embedding_model)

    # -- search ------------------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        language: str | None = None,
        query_vector: Sequence[float] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best chunks for ``query``, best first.

        ``language`` is the question's language (detected when None); chunks in that language get a small boost
        so that, when the knowledge base holds a fact in several languages, the customer's version comes first.
        """
        if language is None:
            language = detect_language(query)
        features = analyze_query(query, language)
        if not self.chunks or features.empty:
            return []
        rank, cover = self._lexical_scores(features)
        dense: dict[int, float] = {}
        if query_vector is not None and self.has_vectors:
            dense = self._dense_scores(query_vector, limit=max(50, k * 5))
        pool = [d for d in heapq.nlargest(max(4 * k, 20), range(len(rank)), key=rank.__getitem__) if rank[d] > 0]
        boosted = {
            d: rank[d] * (1.0 + LANGUAGE_BOOST)
            if language is not None and self.chunks[d].language == language
            else rank[d]
            for d in pool
        }
        if not dense:
            best = heapq.nlargest(k, boosted.items(), key=lambda item: item[1])
            return [SearchHit(self.chunks[d], score=round(s, 4), lexical=round(min(cover[d], 1.0), 4)) for d, s in best]
        return self._fuse(boosted, cover, dense, k)

    def _lexical_scores(self, features: QueryFeatures) -> tuple[list[float], list[float]]:
        """(ranking score, coverage) per chunk; both are shares of the question, coverage capped per word at 1.

        Words and exact tokens share the question equally; n-grams then fill part of what they left unexplained.
        Scores accumulate in flat arrays from precomputed postings: no per-query pass over chunk texts.
        """
        n = len(self.chunks)
        rank = [0.0] * n
        cover = [0.0] * n
        active = (1 if features.units else 0) + (1 if features.exact else 0)
        if features.units:
            self._add_units(features, rank, cover, 1.0 / active)
        if features.exact:
            self._add_terms(self._channels["exact"], features.exact, rank, cover, 1.0 / active, limit=n + 1)
        if features.ngrams:
            ngrams = [0.0] * n
            limit = min(int(NGRAM_MAX_DF * n), max(NGRAM_MIN_DF_LIMIT, int(NGRAM_MIN_DF_SHARE * n)))
            if self._add_terms(self._channels["ngrams"], features.ngrams, None, ngrams, 1.0, limit=max(2, limit)):
                left = [1.0 - (c if c < 1.0 else 1.0) for c in cover]
                rank = [r + NGRAM_SHARE * g * rest for r, g, rest in zip(rank, ngrams, left, strict=True)]
                cover = [c + NGRAM_SHARE * g * rest for c, g, rest in zip(cover, ngrams, left, strict=True)]
        return rank, cover

    def _add_units(self, features: QueryFeatures, rank: list[float], cover: list[float], share: float) -> None:
        """Word channel: each unit scores its best key per chunk; coverage counts a unit at most once."""
        channel = self._channels["words"]
        plan: list[tuple[float, list[tuple[float, int]]]] = []
        denominator = 0.0
        for unit in features.units:
            keys: list[tuple[float, int]] = []
            unit_weight = 0.0
            for key in unit.keys:
                index = channel.terms.get(key)
                if index is None:
                    continue
                effective = channel.idf[index] * (CONCEPT_WEIGHT if key.startswith(CONCEPT_PREFIX) else 1.0)
                unit_weight = max(unit_weight, effective)
                keys.append((effective, index))
            # A word the bot never uses weighs like its rarest word: the passage does not explain it.
            unit_weight = unit_weight or channel.max_idf
            denominator += unit_weight
            plan.append((unit_weight, keys))
        norm = share / denominator
        for unit_weight, keys in plan:
            cap = unit_weight * norm
            if len(keys) == 1:
                effective, index = keys[0]
                scale = effective * _SCALE * norm
                start, end = channel.offsets[index], channel.offsets[index + 1]
                for doc_id, weight in zip(channel.docs[start:end], channel.weights[start:end], strict=True):
                    value = scale * weight
                    rank[doc_id] += value
                    cover[doc_id] += value if value < cap else cap
                continue
            best: dict[int, float] = {}
            for effective, index in keys:
                scale = effective * _SCALE * norm
                start, end = channel.offsets[index], channel.offsets[index + 1]
                for doc_id, weight in zip(channel.docs[start:end], channel.weights[start:end], strict=True):
                    value = scale * weight
                    if value > best.get(doc_id, 0.0):
                        best[doc_id] = value
            for doc_id, value in best.items():
                rank[doc_id] += value
                cover[doc_id] += value if value < cap else cap

    @staticmethod
    def _add_terms(
        channel: _Channel,
        terms: Iterable[str],
        rank: list[float] | None,
        cover: list[float],
        share: float,
        *,
        limit: int,
    ) -> bool:
        """Add a bag-of-terms channel (exact tokens, n-grams); terms in more than ``limit`` chunks are skipped.

        Returns False when no term counted (nothing to normalise by).
        """
        plan: list[tuple[float, int]] = []
        denominator = 0.0
        for term in terms:
            index = channel.terms.get(term)
            if index is None:
                denominator += channel.max_idf
                continue
            if channel.offsets[index + 1] - channel.offsets[index] > limit:
                continue
            idf = channel.idf[index]
            denominator += idf
            plan.append((idf, index))
        if not denominator:
            return False
        norm = share / denominator
        for idf, index in plan:
            scale = idf * _SCALE * norm
            cap = idf * norm
            start, end = channel.offsets[index], channel.offsets[index + 1]
            for doc_id, weight in zip(channel.docs[start:end], channel.weights[start:end], strict=True):
                value = scale * weight
                if rank is not None:
                    rank[doc_id] += value
                cover[doc_id] += value if value < cap else cap
        return True

    def _dense_scores(self, query_vector: Sequence[float], *, limit: int) -> dict[int, float]:
        if len(query_vector) != self.dimension or self._vectors is None:
            return {}
        query = _unit(query_vector)
        try:
            import numpy as np  # optional: 10-50x faster on large bots, pure Python otherwise
        except ImportError:  # pragma: no cover - numpy is usually present
            np = None
        if np is not None:
            if self._matrix is None:
                self._matrix = np.frombuffer(self._vectors, dtype=np.float32).reshape(len(self.chunks), self.dimension)
            sims = self._matrix @ np.asarray(query, dtype=np.float32)
            top = np.argsort(-sims)[:limit]
            return {int(i): float(sims[i]) for i in top}
        dim = self.dimension
        vectors = self._vectors
        sims_list = [
            (doc_id, sum(a * b for a, b in zip(vectors[doc_id * dim : (doc_id + 1) * dim], query, strict=True)))
            for doc_id in range(len(self.chunks))
        ]
        return dict(heapq.nlargest(limit, sims_list, key=lambda item: item[1]))

    def _fuse(self, rank: dict[int, float], cover: list[float], dense: dict[int, float], k: int) -> list[SearchHit]:
        depth = max(50, k * 5)
        lexical_rank = heapq.nlargest(depth, rank.items(), key=lambda item: item[1])
        dense_rank = sorted(dense.items(), key=lambda item: item[1], reverse=True)[:depth]
        fused: dict[int, float] = {}
        for position, (doc_id, _) in enumerate(lexical_rank):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (RRF_K + position + 1)
        for position, (doc_id, _) in enumerate(dense_rank):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (RRF_K + position + 1)
        best = heapq.nlargest(k, fused.items(), key=lambda item: item[1])
        return [
            SearchHit(
                self.chunks[d],
                score=round(s, 6),
                lexical=round(min(cover[d], 1.0), 4),
                dense=round(dense[d], 4) if d in dense else None,
            )
            for d, s in best
        ]

    # -- artifact ----------------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialise the index (chunks, postings, vectors) as the retrieval artifact."""
        document: dict[str, Any] = {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "chunks": [
                [c.source_id, c.title, c.position, c.text, c.kind.value, c.language, c.question] for c in self.chunks
            ],
            "channels": {name: channel.to_dict() for name, channel in self._channels.items()},
            "vectors": None,
        }
        if self.has_vectors and self._vectors is not None:
            document["vectors"] = {
                "dimension": self.dimension,
                "model": self.embedding_model,
                "data": _encode(self._vectors),
            }
        raw = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return zlib.compress(raw, 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> KnowledgeIndex:
        """Load an artifact made by :meth:`to_bytes`. Raises :class:`ArtifactError` on anything unexpected."""
        try:
            document = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError, TypeError) as exc:
            raise ArtifactError("not a retrieval artifact") from exc
        if not isinstance(document, dict) or document.get("format") != ARTIFACT_FORMAT:
            raise ArtifactError("not a retrieval artifact")
        if document.get("version") != ARTIFACT_VERSION:
            raise ArtifactError(f"unsupported retrieval artifact version {document.get('version')!r}")
        try:
            chunks = [
                Chunk(
                    source_id=str(row[0]),
                    title=str(row[1]),
                    position=int(row[2]),
                    text=str(row[3]),
                    kind=ChunkKind(row[4]),
                    language=None if row[5] is None else str(row[5]),
                    question=str(row[6]),
                )
                for row in document["chunks"]
            ]
            channels = {
                name: _Channel.from_dict(document["channels"][name], len(chunks))
                for name in ("words", "ngrams", "exact")
            }
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError("retrieval artifact is incomplete") from exc
        vectors_doc = document.get("vectors")
        vectors: array | None = None
        dimension = 0
        model: str | None = None
        if vectors_doc:
            dimension = int(vectors_doc.get("dimension", 0))
            vectors = _decode("f", vectors_doc.get("data", ""))
            model = vectors_doc.get("model")
            if dimension <= 0 or len(vectors) != dimension * len(chunks):
                raise ArtifactError("retrieval artifact vectors do not match its chunks")
        return cls(chunks, channels, vectors, dimension, model)


def _doc_typecode(n_docs: int) -> str:
    """Two-byte chunk ids while a bot has under 65,536 chunks: halves the artifact's biggest arrays."""
    return "H" if n_docs < 65_536 else "I"


def _index_text(chunk: Chunk) -> str:
    """What gets indexed for a chunk: its heading path (context the passage itself may not repeat) and its text."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
