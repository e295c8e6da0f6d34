"""The data that flows through answering: the bot's answering settings, a request to a provider and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from bot_runtime.answering.index import SearchHit


class ModelTier(StrEnum):
    """Which model class a bot's plan allows: Flash for Free and Business, Pro for Enterprise."""

    FLASH = "flash"
    PRO = "pro"


@dataclass(frozen=True, slots=True)
class BotProfile:
    """What answering needs to know about a bot (a slice of the runtime config contract).

    ``tenant_id`` / ``bot_id`` only label logs and usage; ``instructions`` are the owner's words; ``strict`` keeps
    answers inside the knowledge base; ``language`` is the bot's default language; an empty ``fallback_message``
    means the translated default.
    """

    name: str = ""
    tenant_id: str = ""
    bot_id: str = ""
    instructions: str = ""
    strict: bool = True
    language: str = "en"
    fallback_message: str = ""
    model_tier: ModelTier = ModelTier.FLASH


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of the conversation."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """Everything a provider gets: the bot, the question, the language to answer in, history and passages."""

    bot: BotProfile
    question: str
    language: str
    history: tuple[Turn, ...] = ()
    passages: tuple[SearchHit, ...] = ()


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """An answer with its provenance.

    ``source_ids`` are the knowledge sources the answer used; ``fallback`` is True when the bot could not answer
    from its knowledge base (the question then belongs to "unanswered questions"); ``blocked`` carries the
    guardrail reason when the question or the answer was refused; ``degraded`` is True when the provider failed
    and the offline answerer stood in.
    """

    text: str
    source_ids: tuple[str, ...] = ()
    fallback: bool = False
    provider: str = "offline"
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    language: str | None = None
    passages: tuple[SearchHit, ...] = field(default=(), repr=False)
    blocked: str | None = None
    degraded: bool = False
