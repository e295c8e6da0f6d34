"""The owner's test console: ask the bot, see its answer, the passages it used and their scores.

It answers exactly as the channels do: the same ``Answerer`` from ``bot_runtime.answering`` with the same
guardrails, over the bot's published artifact (loaded from Redis at the version the bot's row names). The provider
is chosen as the runtimes choose it (``provider_for``): Gemini when GOOGLE_API_KEY is set (Flash, or Pro on
Enterprise), an OpenAI-compatible endpoint when the bot asks for it on Enterprise with OPENAI_COMPAT_API_KEY set,
else the offline answerer.

Console questions never count toward the plan's daily message limit; they have their own per-user rate limit
(CONSOLE_ASK_LIMIT_PER_MINUTE). Each exchange is stored as a ``console`` conversation (so follow-ups see the
history), model token usage is added to the tenant's usage, and guardrail refusals go to the abuse log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncSession

from billing.plans import plan_for
from bot_runtime.answering.engine import Answerer, AnswerProvider
from bot_runtime.answering.guardrails import Guardrails
from bot_runtime.answering.index import Embedder, KnowledgeIndex
from bot_runtime.answering.schemas import AnswerResult, BotProfile, ModelTier, Turn
from bot_runtime.i18n import N_
from control_plane.kit import ratelimit
from control_plane.kit.errors import NotFound
from control_plane.kit.tenancy import TenantContext
from control_plane.knowledge import artifact, repository, schemas
from control_plane.models import AbuseLogEntry, Bot, Conversation, Message
from control_plane.settings import get_settings

CHANNEL = "console"
HISTORY_MESSAGES = 12  # six exchanges: what the answerer's prompt keeps anyway
ABUSE_TEXT_MAX = 2_000
NO_PROVIDER_CALL = frozenset({"offline", "guardrails"})


class ConversationNotFound(NotFound):
    message = N_("This conversation no longer exists. Start a new one.")


@lru_cache(maxsize=8)
def _gemini(api_key: str, flash: str, pro: str, base_url: str, timeout: float) -> AnswerProvider:
    from bot_runtime.answering.providers.gemini import GeminiProvider

    return GeminiProvider(
        api_key, models={ModelTier.FLASH: flash, ModelTier.PRO: pro}, base_url=base_url or None, timeout=timeout
    )


@lru_cache(maxsize=8)
def _openai_compat(api_key: str, base_url: str, model: str, timeout: float) -> AnswerProvider:
    from bot_runtime.answering.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(api_key, base_url=base_url, model=model, timeout=timeout)


def provider_for(bot: Bot, model_tier: str) -> AnswerProvider | None:
    """The provider a bot answers with (None: the offline answerer), chosen exactly as the runtimes choose.

    The runtimes get the providers the tenant config offers (Gemini with GOOGLE_API_KEY; the OpenAI-compatible
    endpoint with OPENAI_COMPAT_API_KEY on Enterprise) and take the bot's ``ai_provider``, or for ``auto``
    Gemini first.
    """
    settings = get_settings()
    available: dict[str, Callable[[], AnswerProvider]] = {}
    if settings.google_api_key:
        available["gemini"] = lambda: _gemini(
            settings.google_api_key,
            settings.gemini_flash_model,
            settings.gemini_pro_model,
            settings.gemini_api_base_url,
            settings.http_timeout_seconds,
        )
    if settings.openai_compat_api_key and model_tier == ModelTier.PRO.value:
        available["openai_compat"] = lambda: _openai_compat(
            settings.openai_compat_api_key,
            settings.openai_compat_base_url,
            settings.openai_compat_model,
            settings.http_timeout_seconds,
        )
    if bot.ai_provider == "offline":
        return None
    wanted = [bot.ai_provider] if bot.ai_provider != "auto" else ["gemini", "openai_compat"]
    for name in wanted:
        if name in available:
            return available[name]()
    return None


def _query_embedder(index: KnowledgeIndex | None) -> Embedder | None:
    if index is None or not index.has_vectors:
        return None
    configured = artifact.embedder_from_settings()
    return configured[0] if configured else None


def _profile(bot: Bot, ctx: TenantContext) -> BotProfile:
    try:
        tier = ModelTier(plan_for(ctx.tenant.plan).model_tier)
    except ValueError:
        tier = ModelTier.FLASH
    return BotProfile(
        name=bot.name,
        tenant_id=str(ctx.tenant_id),
        bot_id=str(bot.id),
        instructions=bot.instructions,
        strict=bot.strict,
        language=bot.language,
        fallback_message=bot.fallback_message,
        model_tier=tier,
    )


async def _conversation(
    db: AsyncSession, ctx: TenantContext, bot: Bot, conversation_id: uuid.UUID | None
) -> tuple[Conversation, list[Turn]]:
    if conversation_id is None:
        conversation = Conversation(tenant_id=ctx.tenant_id, bot_id=bot.id, channel=CHANNEL)
        repository.add(db, conversation)
        await db.flush()
        return conversation, []
    found = await repository.console_conversation(db, ctx, bot.id, conversation_id)
    if found is None:
        raise ConversationNotFound()
    messages = await repository.recent_messages(db, ctx, found.id, HISTORY_MESSAGES)
    history = [Turn(role="user" if m.direction == "in" else "assistant", text=m.text) for m in messages if m.text]
    return found, history


def _log_block(
    db: AsyncSession, ctx: TenantContext, bot: Bot, conversation: Conversation, question: str, result: AnswerResult
) -> None:
    inbound = result.provider == "guardrails"
    matched = Guardrails().check_inbound(question).matched if inbound else None
    repository.add(
        db,
        AbuseLogEntry(
            tenant_id=ctx.tenant_id,
            bot_id=bot.id,
            conversation_id=conversation.id,
            channel=CHANNEL,
            chat_external_id=str(ctx.user_id),
            direction="in" if inbound else "out",
            reason=str(result.blocked)[:32],
            matched=(matched or None) and matched[:200],
            text=question[:ABUSE_TEXT_MAX],
        ),
    )


async def ask(db: AsyncSession, ctx: TenantContext, bot: Bot, data: schemas.AskRequest) -> schemas.AskResponse:
    """Answer one console question (or a follow-up in ``data.conversation_id``) the way the channels would."""
    settings = get_settings()
    await ratelimit.enforce(
        "console-ask", str(ctx.user_id), limit=settings.console_ask_limit_per_minute, window_seconds=60
    )
    conversation, history = await _conversation(db, ctx, bot, data.conversation_id)
    index = await artifact.load_index(db, ctx, bot)
    answerer = Answerer(
        provider=provider_for(bot, plan_for(ctx.tenant.plan).model_tier),
        guardrails=Guardrails(),
        embedder=_query_embedder(index),
    )
    asked_at = datetime.now(UTC)
    started = time.monotonic()
    result = await answerer.answer(index, _profile(bot, ctx), data.question, history=history)
    latency_ms = int((time.monotonic() - started) * 1000)
    now = datetime.now(UTC)
    common = {"tenant_id": ctx.tenant_id, "bot_id": bot.id, "conversation_id": conversation.id}
    # The inbound message carries the fallback flag too: "unanswered questions" are read from inbound messages.
    repository.add(
        db,
        Message(
            **common,
            direction="in",
            text=data.question,
            language=result.language,
            fallback=result.fallback,
            created_at=asked_at,
        ),
    )
    repository.add(
        db,
        Message(
            **common,
            direction="out",
            text=result.text,
            language=result.language,
            fallback=result.fallback,
            provider=result.provider,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            latency_ms=latency_ms,
            delivery_status="sent",
            sources=list(result.source_ids),
            created_at=now,
        ),
    )
    conversation.last_message_at = now
    if result.provider not in NO_PROVIDER_CALL:
        await repository.add_token_usage(
            db,
            tenant_id=ctx.tenant_id,
            bot_id=bot.id,
            provider=result.provider,
            model=result.model or "",
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
        )
    if result.blocked:
        _log_block(db, ctx, bot, conversation, data.question, result)
    await db.flush()
    hits = sorted(result.passages, key=lambda hit: hit.score, reverse=True)
    titles = await repository.source_titles(db, ctx, bot.id, [hit.chunk.source_id for hit in hits])
    return schemas.AskResponse(
        answer=result.text,
        sources=[
            schemas.AskSource(
                source_id=hit.chunk.source_id,
                title=titles.get(hit.chunk.source_id) or hit.chunk.title,
                snippet=hit.chunk.text,
                score=round(hit.score, 4),
            )
            for hit in hits
        ],
        fallback=result.fallback,
        conversation_id=conversation.id,
    )


async def conversation_messages(
    db: AsyncSession, ctx: TenantContext, bot: Bot, conversation_id: uuid.UUID, *, limit: int = 50
) -> list[Message]:
    """A console conversation's last messages, oldest first (for the console page)."""
    found = await repository.console_conversation(db, ctx, bot.id, conversation_id)
    if found is None:
        return []
    return await repository.recent_messages(db, ctx, found.id, limit)


async def abuse_log(
    db: AsyncSession, ctx: TenantContext, bot: Bot, *, limit: int = 50, offset: int = 0
) -> tuple[list[AbuseLogEntry], int]:
    """The bot's refused messages, newest first."""
    return await repository.abuse_page(db, ctx, bot.id, limit=limit, offset=offset)
