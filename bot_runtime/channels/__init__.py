"""Channel adapters inside the tenant runtime (``telegram`` …), plus the few Telegram facts both sides share.

The runtime imports a channel module lazily (``bot_runtime.runtime`` loads ``bot_runtime.channels.<kind>`` when a
tenant's config names the channel), so this package itself stays import-light: the control plane reads the constants
below without pulling in python-telegram-bot's ``telegram.ext`` or the runtime core.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bot_runtime.i18n import N_

if TYPE_CHECKING:
    from bot_runtime.answering.schemas import AnswerResult

# Update kinds we ask Telegram for (setWebhook and getUpdates alike). Anything else is never delivered, so the
# runtime never pays for updates it would ignore.
TELEGRAM_ALLOWED_UPDATES: tuple[str, ...] = ("message", "edited_message", "callback_query", "my_chat_member")

# Languages the bot's command menu is published in (setMyCommands language_code); "" is the default for the rest.
TELEGRAM_COMMAND_LANGUAGES: tuple[str, ...] = ("uz", "ru", "en")

# (command, msgid of its description) for setMyCommands; the runtime's handlers answer exactly these.
TELEGRAM_COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", N_("Start the conversation")),
    ("help", N_("How to use this bot")),
)

# Bot API: 1-4096 characters of text after entity parsing.
TELEGRAM_MAX_MESSAGE_CHARS = 4096

# Flood limits (Bot FAQ): about 30 messages a second per bot, about one a second per chat.
TELEGRAM_MAX_PER_SECOND = 30
TELEGRAM_CHAT_INTERVAL_SECONDS = 1.0


# ---------------------------------------------------------------------------------------------------------------
# Helpers the runtime's channel handlers share (nothing heavy imported until called).


def detect_language(text: str, hint: str | None, default: str) -> str:
    """The language to answer ``text`` in: detected from it, else ``hint`` (the client's), else ``default``."""
    from bot_runtime.answering.langdetect import detect_language as detect

    return detect(text, hint=hint or default) or default


def message_out_data(
    text: str,
    *,
    received_at: float,
    delivery: str,
    parts: int,
    language: str,
    reply_to: Any,
    answer: AnswerResult | None = None,
) -> dict[str, Any]:
    """The ``data`` of a ``message.out`` RuntimeEvent (see ``contract.RuntimeEvent``); ``answer`` None for a notice."""
    return {
        "text": text,
        "latency_ms": round(max(0.0, time.time() - received_at) * 1000),
        "delivery": delivery,
        "parts": parts,
        "language": language,
        "provider": answer.provider if answer else None,
        "model": answer.model if answer else None,
        "tokens_in": answer.tokens_in if answer else 0,
        "tokens_out": answer.tokens_out if answer else 0,
        "fallback": answer.fallback if answer else False,
        "sources": list(answer.source_ids) if answer else [],
        "reply_to": reply_to,
    }


__all__ = [
    "TELEGRAM_ALLOWED_UPDATES",
    "TELEGRAM_CHAT_INTERVAL_SECONDS",
    "TELEGRAM_COMMANDS",
    "TELEGRAM_COMMAND_LANGUAGES",
    "TELEGRAM_MAX_MESSAGE_CHARS",
    "TELEGRAM_MAX_PER_SECOND",
    "detect_language",
    "message_out_data",
]
