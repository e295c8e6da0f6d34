"""Channel adapters inside the tenant runtime (``telegram`` …), plus the few Telegram facts both sides share.

The runtime imports a channel module lazily (``bot_runtime.runtime`` loads ``bot_runtime.channels.<kind>`` when a
tenant's config names the channel), so this package itself stays import-light: the control plane reads the constants
below without pulling in python-telegram-bot's ``telegram.ext`` or the runtime core.
"""

from __future__ import annotations

from bot_runtime.i18n import N_

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

__all__ = [
    "TELEGRAM_ALLOWED_UPDATES",
    "TELEGRAM_CHAT_INTERVAL_SECONDS",
    "TELEGRAM_COMMANDS",
    "TELEGRAM_COMMAND_LANGUAGES",
    "TELEGRAM_MAX_MESSAGE_CHARS",
    "TELEGRAM_MAX_PER_SECOND",
]
