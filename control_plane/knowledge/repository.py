"""All SQL of the knowledge feature: sources, chunks, the bot's artifact row, console conversations, usage, abuse log.

Request-side queries are scoped through ``control_plane.kit.tenancy.scoped`` with the caller's context. Job-side
queries (ingestion, rebuilds, re-syncs) run without a principal and look rows up by the id the job carries: that
id was issued by a scoped request (or by the periodic sweep over all tenants), so it is the capability.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from control_plane.kit.db import utcnow
from control_plane.kit.tenancy import TenantContext, scoped
from control_plane.models import (
    AbuseLogEntry,
    Bot,
    Conversation,
    KnowledgeArtifact,
    KnowledgeChunk,
    KnowledgeSource,
    Message,
    Tenant,
    TokenUsage,
)

# --------------------------------------------------------------------------------------------------------------
# Sources (request side)


def _sources(ctx: TenantContext, bot_id: uuid.UUID) -> Any:
    return scoped(select(KnowledgeSource), KnowledgeSource, ctx).where(KnowledgeSource.bot_id == bot_id)


async def list_sources(
    db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[KnowledgeSource], int]:
    """One page of a bot's sources, newest first, and how many there are."""
    statement = _sources(ctx, bot_id)
    total = await db.scalar(select(func.count()).select_from(statement.subquery()))
    rows = await db.scalars(
        statement.order_by(KnowledgeSource.created_at.desc(), KnowledgeSource.id).limit(limit).offset(offset)
    )
    return list(rows), int(total or 0)


async def status_counts(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID) -> dict[str, int]:
    """How many of the bot's sources are in each status (statuses with none are absent)."""
    statement = scoped(select(KnowledgeSource.status, func.count()), KnowledgeSource, ctx)
    rows = await db.execute(statement.where(KnowledgeSource.bot_id == bot_id).group_by(KnowledgeSource.status))
    return {status: int(count) for status, count in rows}


async def get_source(
    db: AsyncSession,
    ctx: TenantContext,
    bot_id: uuid.UUID,
    source_id: uuid.UUID,
    *,
    with_text: bool = False,
    for_update: bool = False,
) -> KnowledgeSource | None:
    """One source of the bot, or None when it is not this bot's (or not this tenant's)."""
    statement = _sources(ctx, bot_id).where(KnowledgeSource.id == source_id)
    if with_text:
        statement = statement.options(undefer(KnowledgeSource.extracted_text))
    if for_update:
        statement = statement.with_for_update()
    return await db.scalar(statement.execution_options(populate_existing=True))


async def source_by_hash(
    db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, content_hash: str
) -> KnowledgeSource | None:
    return await db.scalar(_sources(ctx, bot_id).where(KnowledgeSource.content_hash == content_hash))


async def unanswered_source(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID) -> KnowledgeSource | None:
    """The Q&A source that collects the answers given on the "unanswered questions" page, if it exists."""
    statement = _sources(ctx, bot_id).where(
        KnowledgeSource.kind == "faq", KnowledgeSource.options["unanswered"].as_boolean().is_(True)
    )
    return await db.scalar(statement.order_by(KnowledgeSource.created_at).limit(1).with_for_update())


async def faq_sources(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID) -> list[KnowledgeSource]:
    return list(await db.scalars(_sources(ctx, bot_id).where(KnowledgeSource.kind == "faq")))


def add(db: AsyncSession, row: object) -> None:
    db.add(row)


async def delete_source(db: AsyncSession, source: KnowledgeSource) -> None:
    # Its chunks go by ON DELETE CASCADE.
    await db.delete(source)


async def source_chunks(
    db: AsyncSession, ctx: TenantContext, source: KnowledgeSource, *, limit: int, offset: int
) -> list[KnowledgeChunk]:
    """The live chunks of a source (those of its current version), in document order."""
    statement = scoped(select(KnowledgeChunk), KnowledgeChunk, ctx).where(
        KnowledgeChunk.source_id == source.id, KnowledgeChunk.version == source.version
    )
    return list(await db.scalars(statement.order_by(KnowledgeChunk.position).limit(limit).offset(offset)))


async def source_titles(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, ids: Sequence[str]) -> dict[str, str]:
    wanted = []
    for raw in ids:
        try:
            wanted.append(uuid.UUID(raw))
        except ValueError:
            continue
    if not wanted:
        return {}
    statement = scoped(select(KnowledgeSource.id, KnowledgeSource.title), KnowledgeSource, ctx).where(
        KnowledgeSource.bot_id == bot_id, KnowledgeSource.id.in_(wanted)
    )
    return {str(row.id): row.title for row in await db.execute(statement)}


async def current_artifact(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID) -> KnowledgeArtifact | None:
    statement = scoped(select(KnowledgeArtifact), KnowledgeArtifact, ctx).where(KnowledgeArtifact.bot_id == bot_id)
    return await db.scalar(statement)


# --------------------------------------------------------------------------------------------------------------
# Jobs: ingestion, rebuilds, re-syncs


async def job_source(
    db: AsyncSession, source_id: uuid.UUID, *, with_original: bool = False, for_update: bool = False
) -> KnowledgeSource | None:
    statement = select(KnowledgeSource).where(KnowledgeSource.id == source_id)
    if with_original:
        statement = statement.options(undefer(KnowledgeSource.original))
    if for_update:
        statement = statement.with_for_update()
    return await db.scalar(statement.execution_options(populate_existing=True))


async def set_progress(db: AsyncSession, source_id: uuid.UUID, progress: int, *, status: str | None = None) -> None:
    values: dict[str, Any] = {"progress": progress, "updated_at": utcnow()}
    if status is not None:
        values["status"] = status
    await db.execute(update(KnowledgeSource).where(KnowledgeSource.id == source_id).values(**values))


async def job_bot(db: AsyncSession, bot_id: uuid.UUID) -> Bot | None:
    return await db.get(Bot, bot_id)


async def lock_artifact(db: AsyncSession, tenant_id: uuid.UUID, bot_id: uuid.UUID) -> KnowledgeArtifact:
    """The bot's artifact row, created on first use, locked until the transaction ends (one rebuild at a time)."""
    await db.execute(
        insert(KnowledgeArtifact)
        .values(id=uuid.uuid4(), tenant_id=tenant_id, bot_id=bot_id, version=0)
        .on_conflict_do_nothing(index_elements=[KnowledgeArtifact.bot_id])
    )
    statement = select(KnowledgeArtifact).where(KnowledgeArtifact.bot_id == bot_id).with_for_update()
    row = await db.scalar(statement.execution_options(populate_existing=True))
    assert row is not None
    return row


async def artifact_by_bot(db: AsyncSession, bot_id: uuid.UUID) -> KnowledgeArtifact | None:
    return await db.scalar(select(KnowledgeArtifact).where(KnowledgeArtifact.bot_id == bot_id))


async def artifact_versions(db: AsyncSession, tenant_id: uuid.UUID) -> dict[str, int]:
    """Current artifact version of each of a tenant's bots, as the runtime config document carries them."""
    statement = select(KnowledgeArtifact.bot_id, KnowledgeArtifact.version).where(
        KnowledgeArtifact.tenant_id == tenant_id
    )
    return {str(row.bot_id): row.version for row in await db.execute(statement)}


async def live_chunks(
    db: AsyncSession, bot_id: uuid.UUID, *, replacing: tuple[uuid.UUID, int] | None = None
) -> list[KnowledgeChunk]:
    """The chunks answers are built from: each source's chunks at its current version, in source order.

    ``replacing=(source_id, version)`` takes that source's chunks at ``version`` instead (the new version being
    swapped in). Sources that failed a re-sync keep serving their last good version.
    """
    live = (KnowledgeSource.version > 0) & (KnowledgeChunk.version == KnowledgeSource.version)
    if replacing is not None:
        source_id, version = replacing
        live = or_(
            (KnowledgeSource.id != source_id) & live,
            (KnowledgeSource.id == source_id) & (KnowledgeChunk.version == version),
        )
    statement = (
        select(KnowledgeChunk)
        .join(KnowledgeSource, KnowledgeSource.id == KnowledgeChunk.source_id)
        .where(KnowledgeChunk.bot_id == bot_id, live)
        .order_by(KnowledgeSource.created_at, KnowledgeSource.id, KnowledgeChunk.position)
    )
    return list(await db.scalars(statement))


async def drop_old_chunks(db: AsyncSession, source_id: uuid.UUID, keep_version: int) -> None:
    await db.execute(
        delete(KnowledgeChunk).where(KnowledgeChunk.source_id == source_id, KnowledgeChunk.version != keep_version)
    )


async def store_embeddings(db: AsyncSession, vectors: dict[uuid.UUID, list[float]], model: str) -> None:
    """Vectors computed for chunks that had none (an API key added after they were ingested)."""
    for chunk_id, vector in vectors.items():
        await db.execute(
            update(KnowledgeChunk)
            .where(KnowledgeChunk.id == chunk_id)
            .values(embedding=vector, meta=KnowledgeChunk.meta.op("||")(type_coerce({"embedding_model": model}, JSONB)))
        )


async def due_url_sources(db: AsyncSession, now: datetime) -> list[uuid.UUID]:
    """Website sources whose re-sync interval has passed and that are not being processed already.

    ``updated_at`` also counts: a failed attempt moves it, so a broken site is retried once per interval, not on
    every sweep.
    """
    interval = func.make_interval(0, 0, 0, 0, KnowledgeSource.sync_interval_hours)
    statement = select(KnowledgeSource.id).where(
        KnowledgeSource.kind == "url",
        KnowledgeSource.sync_interval_hours.is_not(None),
        KnowledgeSource.status.in_(("ready", "failed")),
        func.coalesce(KnowledgeSource.last_synced_at, KnowledgeSource.created_at) + interval <= now,
        KnowledgeSource.updated_at + interval <= now,
    )
    return list(await db.scalars(statement.order_by(KnowledgeSource.last_synced_at.nulls_first())))


async def tenant_plan(db: AsyncSession, tenant_id: uuid.UUID) -> str:
    return (await db.scalar(select(Tenant.plan).where(Tenant.id == tenant_id))) or "free"


# --------------------------------------------------------------------------------------------------------------
# Test console, usage and the abuse log


async def console_conversation(
    db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, conversation_id: uuid.UUID
) -> Conversation | None:
    statement = scoped(select(Conversation), Conversation, ctx).where(
        Conversation.id == conversation_id, Conversation.bot_id == bot_id, Conversation.channel == "console"
    )
    return await db.scalar(statement)


async def recent_messages(
    db: AsyncSession, ctx: TenantContext, conversation_id: uuid.UUID, limit: int
) -> list[Message]:
    """The conversation's last ``limit`` messages, oldest first."""
    statement = scoped(select(Message), Message, ctx).where(Message.conversation_id == conversation_id)
    rows = list(await db.scalars(statement.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)))
    return rows[::-1]


async def fallback_questions(
    db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, *, since: datetime, limit: int
) -> list[tuple[str, datetime]]:
    """Customers' messages that got the fallback answer (newest first): (text, when)."""
    statement = scoped(select(Message.text, Message.created_at), Message, ctx).where(
        Message.bot_id == bot_id,
        Message.direction == "in",
        Message.fallback.is_(True),
        Message.created_at >= since,
    )
    rows = await db.execute(statement.order_by(Message.created_at.desc()).limit(limit))
    return [(row.text, row.created_at) for row in rows]


async def add_token_usage(
    db: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    bot_id: uuid.UUID,
    provider: str,
    model: str,
    tokens_in: int,
    tokens_out: int,
    day: date | None = None,
) -> None:
    """Count one model call in the day's usage row for (tenant, bot, provider, model), atomically."""
    statement = insert(TokenUsage).values(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        bot_id=bot_id,
        day=day or utcnow().date(),
        provider=provider,
        model=model,
        requests=1,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
    )
    statement = statement.on_conflict_do_update(
        constraint="uq_token_usage_tenant_id_bot_id_day_provider_model",
        set_={
            "requests": TokenUsage.requests + 1,
            "tokens_in": TokenUsage.tokens_in + statement.excluded.tokens_in,
            "tokens_out": TokenUsage.tokens_out + statement.excluded.tokens_out,
        },
    )
    await db.execute(statement)


async def abuse_page(
    db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[AbuseLogEntry], int]:
    statement = scoped(select(AbuseLogEntry), AbuseLogEntry, ctx).where(AbuseLogEntry.bot_id == bot_id)
    total = await db.scalar(select(func.count()).select_from(statement.subquery()))
    rows = await db.scalars(
        statement.order_by(AbuseLogEntry.created_at.desc(), AbuseLogEntry.id).limit(limit).offset(offset)
    )
    return list(rows), int(total or 0)
