"""The tenant runtime's answerer, shared by every channel: the bot's knowledge artifact plus the tenant's provider.

Channels (Telegram, the widget, ...) call ``TenantAnswerer.answer`` so that a question gets the same answer
whichever channel it came from, and the control plane's test console uses the same engine underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot_runtime import contract
from bot_runtime.crypto import decrypt_json
from bot_runtime.resp import Redis

if TYPE_CHECKING:
    from bot_runtime.answering.engine import Answerer, AnswerProvider
    from bot_runtime.answering.index import Embedder, KnowledgeIndex
    from bot_runtime.answering.schemas import AnswerResult, Turn

log = logging.getLogger("bot_runtime.answering")


@dataclass
class TenantAnswerer:
    """The answering engine for one tenant runtime, shared by every channel (one per process).

    Knowledge indexes load lazily from ``contract.artifact_key`` and stay cached per bot until the config names a
    new artifact version. Providers are built from the tenant config's encrypted ``providers`` (cached per
    encrypted settings, so a rotated key builds a new client); without any, the offline answerer answers.
    """

    redis_url: str = ""
    # A channel that already holds the artifact bytes' source may pass its own loader instead of a Redis URL.
    loader: Callable[[str, int], Awaitable[bytes | None]] | None = None
    _binary: Redis | None = None
    _indexes: dict[str, tuple[int, KnowledgeIndex | None]] = field(default_factory=dict)
    _answerers: dict[tuple[str, str], Answerer] = field(default_factory=dict)

    async def answer(
        self,
        config: contract.TenantConfig,
        bot: contract.BotConfig,
        question: str,
        *,
        history: tuple[Turn, ...],
        language_hint: str | None,
    ) -> AnswerResult:
        from bot_runtime.answering.schemas import BotProfile, ModelTier

        try:
            tier = ModelTier(config.plan.model_tier)
        except ValueError:
            tier = ModelTier.FLASH
        profile = BotProfile(
            name=bot.name,
            tenant_id=config.tenant_id,
            bot_id=bot.id,
            instructions=bot.instructions,
            strict=bot.strict,
            language=bot.language,
            fallback_message=bot.fallback_message,
            model_tier=tier,
        )
        index = await self._index(bot)
        answerer = self._answerer(config, bot)
        return await answerer.answer(index, profile, question, history=history, language_hint=language_hint)

    def _answerer(self, config: contract.TenantConfig, bot: contract.BotConfig) -> Answerer:
        from bot_runtime.answering.engine import Answerer
        from bot_runtime.answering.guardrails import Guardrails

        name, token = _provider_choice(config, bot)
        cache_key = (name, token)
        answerer = self._answerers.get(cache_key)
        if answerer is None:
            provider, embedder = _build_provider(name, token) if name else (None, None)
            answerer = Answerer(provider=provider, embedder=embedder, guardrails=Guardrails())
            self._answerers[cache_key] = answerer
        return answerer

    async def _index(self, bot: contract.BotConfig) -> KnowledgeIndex | None:
        cached = self._indexes.get(bot.id)
        if cached is not None and cached[0] == bot.artifact_version:
            return cached[1]
        index = None
        if bot.artifact_version > 0:
            raw = await self._load_artifact(bot.id, bot.artifact_version)
            if raw:
                from bot_runtime.answering.index import ArtifactError, KnowledgeIndex

                try:
                    index = await asyncio.to_thread(KnowledgeIndex.from_bytes, raw)
                except ArtifactError:
                    log.exception("runtime.artifact.invalid", extra={"bot_id": bot.id})
        self._indexes[bot.id] = (bot.artifact_version, index)
        return index

    async def _load_artifact(self, bot_id: str, version: int) -> bytes | None:
        if self.loader is not None:
            return await self.loader(bot_id, version)
        # Artifacts are binary (zlib); the runtime's own client decodes responses, so they get a client of their own.
        if self._binary is None:
            if not self.redis_url:
                return None
            self._binary = Redis.from_url(
                self.redis_url, decode_responses=False, socket_timeout=15, socket_connect_timeout=5
            )
        raw = await self._binary.get(contract.artifact_key(bot_id, version))
        return bytes(raw) if raw is not None else None

    async def aclose(self) -> None:
        if self._binary is not None:
            with contextlib.suppress(Exception):
                await self._binary.aclose()
            self._binary = None


def _provider_choice(config: contract.TenantConfig, bot: contract.BotConfig) -> tuple[str, str]:
    """(provider name, its encrypted settings) for the bot, or ("", "") for the offline answerer."""
    if bot.ai_provider == "offline":
        return "", ""
    wanted = [bot.ai_provider] if bot.ai_provider != "auto" else ["gemini", "openai_compat"]
    for name in wanted:
        token = config.providers.get(name)
        if token:
            return name, token
    return "", ""


def _build_provider(name: str, token: str) -> tuple[AnswerProvider | None, Embedder | None]:
    """The provider (and, for Gemini, the query embedder) from encrypted settings; (None, None) when unusable."""
    try:
        settings = decrypt_json(token)
        if name == "gemini":
            from bot_runtime.answering.providers.gemini import GeminiEmbedder, GeminiProvider
            from bot_runtime.answering.schemas import ModelTier

            flash = settings.get("flash_model") or settings.get("model")
            models = {ModelTier.FLASH: flash, ModelTier.PRO: settings.get("model") or flash}
            base_url = settings.get("base_url") or None
            provider = GeminiProvider(
                settings["api_key"], models={k: v for k, v in models.items() if v}, base_url=base_url
            )
            embedder = None
            if settings.get("embedding_model"):
                embedder = GeminiEmbedder(settings["api_key"], model=settings["embedding_model"], base_url=base_url)
            return provider, embedder
        if name == "openai_compat":
            from bot_runtime.answering.providers.openai_compat import OpenAICompatProvider

            return (
                OpenAICompatProvider(settings["api_key"], base_url=settings["base_url"], model=settings["model"]),
                None,
            )
    except Exception:
        # A broken provider setting must not silence the bot: the offline answerer still answers from the KB.
        log.exception("runtime.provider.unusable", extra={"provider": name})
    return None, None


# One answerer per runtime process, shared by every channel: a bot's knowledge index is loaded (and held in
# memory) once, whichever channels its customers use.
_shared: TenantAnswerer | None = None


def shared_answerer(redis_url: str) -> TenantAnswerer:
    """The process's answerer (created on first use)."""
    global _shared
    if _shared is None:
        _shared = TenantAnswerer(redis_url=redis_url)
    elif not _shared.redis_url:
        _shared.redis_url = redis_url
    return _shared


async def close_shared_answerer() -> None:
    """Close the shared answerer's Redis client (a runtime shutdown hook; safe to call more than once)."""
    global _shared
    if _shared is not None:
        await _shared.aclose()
        _shared = None
