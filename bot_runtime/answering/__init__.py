"""Answering for every channel and the owner's test console: chunking, retrieval, providers, guardrails.

Typical use (runtime side)::

    index = KnowledgeIndex.from_bytes(artifact_bytes)          # published by ingestion
    answerer = Answerer(provider=GeminiProvider(key), guardrails=Guardrails())
    result = await answerer.answer(index, BotProfile(...), "Yetkazib berish bormi?", language_hint="uz")

Provider classes live in ``bot_runtime.answering.providers.*`` and are imported explicitly, so their SDKs load
only when a tenant uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot_runtime.answering.chunking import Chunk, ChunkKind, chunk_csv, chunk_document, chunk_faq, chunk_table
    from bot_runtime.answering.engine import (
        Answerer,
        AnswerProvider,
        Prompt,
        ProviderError,
        build_prompt,
        parse_reply,
    )
    from bot_runtime.answering.guardrails import Guardrails, GuardReason, Verdict
    from bot_runtime.answering.index import ArtifactError, Embedder, KnowledgeIndex, SearchHit
    from bot_runtime.answering.langdetect import detect_language
    from bot_runtime.answering.offline import OfflineAnswerer, default_fallback_message
    from bot_runtime.answering.schemas import AnswerRequest, AnswerResult, BotProfile, ModelTier, Turn

# Public name -> submodule. Submodules load on first use (PEP 562), so importing one of them (the runtime imports
# only what it needs) does not pull in every other one.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Chunk", "ChunkKind", "chunk_csv", "chunk_document", "chunk_faq", "chunk_table"), "chunking"),
    **dict.fromkeys(("Answerer", "AnswerProvider", "Prompt", "ProviderError", "build_prompt", "parse_reply"), "engine"),
    **dict.fromkeys(("Guardrails", "GuardReason", "Verdict"), "guardrails"),
    **dict.fromkeys(("ArtifactError", "Embedder", "KnowledgeIndex", "SearchHit"), "index"),
    "detect_language": "langdetect",
    **dict.fromkeys(("OfflineAnswerer", "default_fallback_message"), "offline"),
    **dict.fromkeys(("AnswerRequest", "AnswerResult", "BotProfile", "ModelTier", "Turn"), "schemas"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "AnswerProvider",
    "AnswerRequest",
    "AnswerResult",
    "Answerer",
    "ArtifactError",
    "BotProfile",
    "Chunk",
    "ChunkKind",
    "Embedder",
    "GuardReason",
    "Guardrails",
    "KnowledgeIndex",
    "ModelTier",
    "OfflineAnswerer",
    "Prompt",
    "ProviderError",
    "SearchHit",
    "Turn",
    "Verdict",
    "build_prompt",
    "chunk_csv",
    "chunk_document",
    "chunk_faq",
    "chunk_table",
    "default_fallback_message",
    "detect_language",
    "parse_reply",
]
