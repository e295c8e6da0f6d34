"""From extracted documents to a bot's published retrieval artifact, and back again for the test console.

Ingestion turns a source into chunks (``document_chunks``: a Q&A pair or a table row stays one chunk, running text
is chunked by section), optionally embeds them, and then swaps them in atomically (``swap_source``). The swap runs
in one transaction holding the bot's ``knowledge_artifacts`` row lock:

1. insert the source's chunks at its next version (the old version's chunks stay),
2. build the index from every source's live chunks plus the new ones and SET it at ``artifact_key(bot, N + 1)``,
3. point the source at the new version, delete its old chunks, bump the bot's artifact version to N + 1, commit.

Runtimes keep answering from version N until the config document names N + 1 (published after the commit), and
version N stays in Redis for them; versions older than N are deleted. A crash before the commit leaves the old state
everywhere (an orphan N + 1 key is simply overwritten by the next build).

The console loads the artifact named by the bot's row, caching the parsed index per (bot, version) in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import sys
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime import contract
from bot_runtime.answering.chunking import Chunk, ChunkKind, chunk_document, chunk_faq, chunk_table
from bot_runtime.answering.index import ArtifactError, Embedder, KnowledgeIndex
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.redis import get_redis
from control_plane.kit.tenancy import TenantContext
from control_plane.knowledge import repository
from control_plane.knowledge.extract import Block, ExtractedDocument, render_text
from control_plane.models import Bot, KnowledgeArtifact, KnowledgeChunk
from control_plane.settings import get_settings

log = logging.getLogger("botfactory.knowledge")

TITLE_MAX = 300
EMBED_BATCH = 64
# Embedding chunks that predate the API key happens inside the rebuild's lock; past this many, answer lexically
# until the sources are re-ingested rather than hold the lock for minutes.
MAX_LATE_EMBEDDINGS = 2_000
CACHE_SIZE = 16


# --------------------------------------------------------------------------------------------------------------
# Chunks


@dataclass(slots=True)
class PreparedSource:
    """A source read and chunked, ready to swap in. ``title`` None keeps the source's current title."""

    text: str
    chunks: list[Chunk]
    meta: list[dict[str, Any]]
    title: str | None = None
    vectors: list[list[float]] | None = None
    embedding_model: str | None = None
    extra_options: dict[str, Any] = field(default_factory=dict)

    @property
    def text_hash(self) -> str:
        """Hash of what was learnt: an unchanged re-sync needs no rebuild."""
        digest = hashlib.sha256(self.text.encode("utf-8"))
        for chunk in self.chunks:
            digest.update(b"\x00" + chunk.title.encode("utf-8") + b"\x01" + chunk.text.encode("utf-8"))
        return digest.hexdigest()


def _joined_title(title: str, headings: Sequence[str]) -> str:
    parts = [title] if title and (not headings or headings[0] != title) else []
    return " › ".join([*parts, *headings])[:TITLE_MAX]


def document_chunks(document: ExtractedDocument, *, source_id: str, title: str) -> list[Chunk]:
    """Chunk an extracted document along its blocks.

    Runs of headings, paragraphs and list items go through the runtime's text chunker under their heading path;
    consecutive table rows with one header become one chunk per row (header repeated), Q&A blocks one chunk per
    pair. Positions are numbered across the whole document so ``source_id#position`` stays unique.
    """
    chunks: list[Chunk] = []
    headings: list[tuple[int, str]] = []
    text_run: list[Block] = []
    table: tuple[tuple[str, ...], list[list[str]]] | None = None
    pairs: list[tuple[str, str]] = []

    def current_title() -> str:
        return _joined_title(title, [text for _, text in headings])

    def emit(new: list[Chunk]) -> None:
        start = len(chunks)
        chunks.extend(dataclasses.replace(chunk, position=start + i) for i, chunk in enumerate(new))

    def flush() -> None:
        nonlocal table
        if text_run:
            emit(chunk_document(render_text(text_run), source_id=source_id, title=current_title()))
            text_run.clear()
        if table is not None:
            emit(chunk_table(list(table[0]), table[1], source_id=source_id, title=current_title()))
            table = None
        if pairs:
            emit(chunk_faq(pairs, source_id=source_id, title=current_title()))
            pairs.clear()

    for block in document.blocks:
        if block.kind == "heading":
            flush()
            level = max(block.level, 1)
            headings = [(lvl, text) for lvl, text in headings if lvl < level] + [(level, block.text)]
        elif block.kind == "qa" and block.meta.get("question") and block.meta.get("answer"):
            if text_run or table is not None:
                flush()
            pairs.append((str(block.meta["question"]), str(block.meta["answer"])))
        elif block.kind == "table_row" and block.meta.get("header") and block.meta.get("row") is not None:
            header = tuple(str(cell) for cell in block.meta["header"])
            if text_run or pairs or (table is not None and table[0] != header):
                flush()
            if table is None:
                table = (header, [])
            table[1].append([str(cell) for cell in block.meta["row"]])
        else:
            if table is not None or pairs:
                flush()
            text_run.append(block)
    flush()
    return chunks


def faq_chunks(items: Sequence[dict[str, str]], *, source_id: str, title: str) -> list[Chunk]:
    return chunk_faq(
        [(item.get("question", ""), item.get("answer", "")) for item in items], source_id=source_id, title=title
    )


def _index_text(chunk: Chunk) -> str:
    # The same text the index analyses (heading path + passage), so vectors and lexical postings agree.
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


def embedder_from_settings() -> tuple[Embedder, str] | None:
    """The Gemini embedder and its model id when GOOGLE_API_KEY is set; None means lexical retrieval only."""
    settings = get_settings()
    if not settings.google_api_key:
        return None
    from bot_runtime.answering.providers.gemini import GeminiEmbedder

    embedder = GeminiEmbedder(
        settings.google_api_key,
        model=settings.gemini_embedding_model,
        base_url=settings.gemini_api_base_url or None,
        timeout=settings.http_timeout_seconds,
    )
    return embedder, settings.gemini_embedding_model


def embed_texts(embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
    """Document vectors in batches (blocking: call it in a thread)."""
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = embedder.embed(texts[start : start + EMBED_BATCH], "document")
        if len(batch) != len(texts[start : start + EMBED_BATCH]):
            raise ValueError("the embedder returned a different number of vectors")
        vectors.extend(batch)
    return vectors


async def embed_chunks(chunks: Sequence[Chunk]) -> tuple[list[list[float]] | None, str | None]:
    """Vectors for ``chunks`` when an embedder is configured; (None, None) without one or when it fails."""
    configured = embedder_from_settings()
    if configured is None or not chunks:
        return None, None
    embedder, model = configured
    try:
        vectors = await asyncio.to_thread(embed_texts, embedder, [_index_text(chunk) for chunk in chunks])
    except Exception:  # lexical retrieval still works; the next rebuild retries the missing vectors
        log.warning("knowledge.embedding.failed", exc_info=True)
        return None, None
    return vectors, model


def row_to_chunk(row: KnowledgeChunk) -> Chunk:
    meta = row.meta or {}
    try:
        kind = ChunkKind(row.kind)
    except ValueError:
        kind = ChunkKind.TEXT
    return Chunk(
        source_id=str(row.source_id),
        title=row.title,
        position=row.position,
        text=row.text,
        kind=kind,
        language=row.language,
        question=str(meta.get("question", "")),
    )


def chunk_rows(
    source_tenant: uuid.UUID, bot_id: uuid.UUID, source_id: uuid.UUID, version: int, prepared: PreparedSource
) -> list[KnowledgeChunk]:
    rows = []
    for i, chunk in enumerate(prepared.chunks):
        meta = dict(prepared.meta[i]) if i < len(prepared.meta) else {}
        if chunk.question:
            meta["question"] = chunk.question
        vector = prepared.vectors[i] if prepared.vectors is not None else None
        if vector is not None and prepared.embedding_model:
            meta["embedding_model"] = prepared.embedding_model
        rows.append(
            KnowledgeChunk(
                tenant_id=source_tenant,
                bot_id=bot_id,
                source_id=source_id,
                version=version,
                position=chunk.position,
                kind=chunk.kind.value,
                title=chunk.title[:TITLE_MAX],
                text=chunk.text,
                language=(chunk.language or None) and chunk.language[:5],
                meta=meta,
                embedding=vector,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------------------------
# Building and storing


def artifact_redis_key(bot_id: uuid.UUID | str, version: int) -> str:
    # contract.prefix() reads the environment; make it agree with settings that may come from ``.env``.
    os.environ.setdefault("REDIS_KEY_PREFIX", get_settings().redis_key_prefix)
    return contract.artifact_key(str(bot_id), version)


async def _vectors(db: AsyncSession, rows: Sequence[KnowledgeChunk]) -> tuple[list[list[float]] | None, str | None]:
    """One vector per live chunk from a single embedding model, embedding the few that lack one; else None."""
    configured = embedder_from_settings()
    if configured is None or not rows:
        return None, None
    embedder, model = configured
    missing = [row for row in rows if row.embedding is None or (row.meta or {}).get("embedding_model") != model]
    if missing:
        if len(missing) > MAX_LATE_EMBEDDINGS:
            return None, None
        try:
            texts = [_index_text(row_to_chunk(row)) for row in missing]
            vectors = await asyncio.to_thread(embed_texts, embedder, texts)
        except Exception:
            log.warning("knowledge.embedding.failed", exc_info=True)
            return None, None
        fresh = {row.id: vector for row, vector in zip(missing, vectors, strict=True)}
        await repository.store_embeddings(db, fresh, model)
        for row in missing:
            row.embedding = fresh[row.id]
    dimension = len(rows[0].embedding or [])
    if not dimension or any(len(row.embedding or []) != dimension for row in rows):
        return None, None
    return [list(row.embedding or []) for row in rows], model


def build_index(rows: Sequence[KnowledgeChunk], vectors: list[list[float]] | None, model: str | None) -> KnowledgeIndex:
    return KnowledgeIndex.build([row_to_chunk(row) for row in rows], vectors=vectors, embedding_model=model)


async def _rebuild_locked(
    db: AsyncSession, artifact: KnowledgeArtifact, *, replacing: tuple[uuid.UUID, int] | None = None
) -> int:
    """Build the bot's index from its live chunks, store it as the next version, and record that version.

    Runs while the caller holds the artifact row lock; the caller commits.
    """
    rows = await repository.live_chunks(db, artifact.bot_id, replacing=replacing)
    vectors, model = await _vectors(db, rows)
    index = await asyncio.to_thread(build_index, rows, vectors, model)
    data = await asyncio.to_thread(index.to_bytes)
    version = artifact.version + 1
    # No TTL: a bot's current artifact must outlive any idle period; old versions are deleted after the swap.
    await get_redis().set(artifact_redis_key(artifact.bot_id, version), data)
    artifact.version = version
    artifact.chunk_count = len(rows)
    artifact.size_bytes = len(data)
    artifact.embedding_model = model if vectors is not None else None
    artifact.built_at = datetime.now(UTC)
    _remember(artifact.bot_id, version, index)
    return version


def source_revision(options: dict[str, Any] | None) -> int:
    """The source's content revision: bumped by every edit or re-sync request, checked before a swap."""
    value = (options or {}).get("revision", 0)
    return value if isinstance(value, int) else 0


async def swap_source(source_id: uuid.UUID, revision: int, prepared: PreparedSource) -> int | None:
    """Swap a source's new chunks in and publish the rebuilt artifact; returns the new artifact version.

    Returns None when the source was deleted or changed again (a newer ingestion is queued) meanwhile: the newer
    job does the swap, this one must not overwrite its content with older content.
    """
    sessionmaker = get_sessionmaker()
    async with sessionmaker() as db:
        found = await repository.job_source(db, source_id)
        if found is None:
            return None
        tenant_id, bot_id = found.tenant_id, found.bot_id
        artifact = await repository.lock_artifact(db, tenant_id, bot_id)
        source = await repository.job_source(db, source_id, for_update=True)
        if source is None or source_revision(source.options) != revision:
            await db.rollback()
            return None
        new_version = source.version + 1
        db.add_all(chunk_rows(tenant_id, bot_id, source.id, new_version, prepared))
        await db.flush()
        version = await _rebuild_locked(db, artifact, replacing=(source.id, new_version))
        await repository.drop_old_chunks(db, source.id, new_version)
        options = {k: v for k, v in (source.options or {}).items() if k not in ("error_params", "error_code")}
        options.update(prepared.extra_options)
        options["text_hash"] = prepared.text_hash
        source.options = options
        source.version = new_version
        source.chunk_count = len(prepared.chunks)
        source.extracted_text = prepared.text
        if prepared.title:
            source.title = prepared.title[:TITLE_MAX]
        source.status = "ready"
        source.progress = 100
        source.error = None
        source.last_synced_at = datetime.now(UTC)
        await db.commit()
    log.info(
        "knowledge.artifact.swapped",
        extra={"tenant_id": str(tenant_id), "bot_id": str(bot_id), "source_id": str(source_id), "version": version},
    )
    await after_swap(tenant_id, bot_id, version)
    return version


async def rebuild(bot_id: uuid.UUID) -> int | None:
    """Rebuild and publish a bot's artifact from its live chunks (after a source was deleted)."""
    sessionmaker = get_sessionmaker()
    async with sessionmaker() as db:
        bot = await repository.job_bot(db, bot_id)
        if bot is None:
            return None
        tenant_id = bot.tenant_id
        artifact = await repository.lock_artifact(db, tenant_id, bot_id)
        version = await _rebuild_locked(db, artifact)
        await db.commit()
    await after_swap(tenant_id, bot_id, version)
    return version


async def after_swap(tenant_id: uuid.UUID, bot_id: uuid.UUID, version: int) -> None:
    """Tell the runtimes about the new version, then drop artifacts older than the previous one."""
    await publish(tenant_id, bot_id, version)
    await delete_old_artifacts(bot_id, keep_from=version - 1)


async def publish(tenant_id: uuid.UUID, bot_id: uuid.UUID, version: int) -> None:
    """Republish the tenant's runtime config with the bot's new artifact version (when publishing exists)."""
    try:
        from control_plane.runtimes.publish import publish_tenant_config
    except ImportError:  # the runtime publishing feature is not installed: the console still works from the DB
        return
    try:
        async with get_sessionmaker()() as db:
            await publish_tenant_config(db, tenant_id, artifact_versions={str(bot_id): version})
    except Exception:  # `botfactory runtimes sync` repairs a missed publication
        log.exception("knowledge.artifact.publish_failed", extra={"tenant_id": str(tenant_id), "bot_id": str(bot_id)})


async def delete_old_artifacts(bot_id: uuid.UUID, *, keep_from: int) -> int:
    """Delete the bot's artifact keys below version ``keep_from``; returns how many were deleted."""
    redis = get_redis()
    pattern = artifact_redis_key(bot_id, 0)[: -len("0")] + "*"
    stale = []
    async for raw in redis.scan_iter(match=pattern, count=500):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        suffix = key.rsplit(":", 1)[-1]
        if suffix.isdigit() and int(suffix) < keep_from:
            stale.append(key)
    if stale:
        await redis.delete(*stale)
    return len(stale)


async def delete_bot_artifacts(bot_id: uuid.UUID) -> int:
    """Delete every artifact version of a deleted bot from Redis (its rows go by ON DELETE CASCADE)."""
    return await delete_old_artifacts(bot_id, keep_from=sys.maxsize)


# --------------------------------------------------------------------------------------------------------------
# Loading (test console)

_cache: OrderedDict[tuple[str, int], KnowledgeIndex] = OrderedDict()


def _remember(bot_id: uuid.UUID, version: int, index: KnowledgeIndex) -> None:
    _cache[(str(bot_id), version)] = index
    _cache.move_to_end((str(bot_id), version))
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)


async def load_index(db: AsyncSession, ctx: TenantContext, bot: Bot) -> KnowledgeIndex | None:
    """The bot's current index, as the runtimes load it: from Redis at the version the bot's row names.

    Cached per (bot, version), so a new version is picked up on the next question. When Redis lost the artifact
    (a restart without persistence) it is rebuilt from the chunks in PostgreSQL and stored again.
    """
    artifact = await repository.current_artifact(db, ctx, bot.id)
    if artifact is None or artifact.version <= 0:
        return None
    key = (str(bot.id), artifact.version)
    cached = _cache.get(key)
    if cached is not None:
        _cache.move_to_end(key)
        return cached
    redis_key = artifact_redis_key(bot.id, artifact.version)
    raw = await get_redis().get(redis_key)
    index: KnowledgeIndex | None = None
    if raw is not None:
        try:
            index = await asyncio.to_thread(KnowledgeIndex.from_bytes, raw)
        except ArtifactError:
            log.exception("knowledge.artifact.invalid", extra={"tenant_id": str(bot.tenant_id), "bot_id": str(bot.id)})
    if index is None:
        rows = await repository.live_chunks(db, bot.id)
        vectors = None
        dimension = len(rows[0].embedding or []) if rows else 0
        if dimension and all(len(row.embedding or []) == dimension for row in rows):
            vectors = [list(row.embedding or []) for row in rows]
        index = await asyncio.to_thread(build_index, rows, vectors, artifact.embedding_model)
        await get_redis().set(redis_key, await asyncio.to_thread(index.to_bytes), nx=True)
        log.warning("knowledge.artifact.restored", extra={"tenant_id": str(bot.tenant_id), "bot_id": str(bot.id)})
    _remember(bot.id, artifact.version, index)
    return index
