"""Request and response bodies of the channels API.

The token is a ``SecretStr`` so it never shows up in a repr, a log line or a validation error echo.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bot_runtime.i18n import N_

TelegramMode = Literal["webhook", "polling"]

# "<bot id>:<secret>" as @BotFather hands it out (the secret is 35 characters today; allow some slack both ways).
TELEGRAM_TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$")


class TelegramConnect(BaseModel):
    """Connect (or reconnect with a new token) a bot to Telegram."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(
        description="The bot token from @BotFather, like 123456789:AAE…", json_schema_extra={"writeOnly": True}
    )

    @field_validator("token", mode="before")
    @classmethod
    def _token_format(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            return value  # pydantic reports the type error
        raw = raw.strip()
        if not TELEGRAM_TOKEN_RE.fullmatch(raw):
            raise ValueError(
                N_("This does not look like a Telegram bot token (123456789:AAE…). Copy it from @BotFather.")
            )
        return raw


class TelegramConnected(BaseModel):
    bot_username: str = Field(description="The bot's @username on Telegram, without the @.")
    mode: TelegramMode = Field(description="How updates reach us: Telegram calls our webhook, or we poll it.")


class TelegramWebhookHealth(BaseModel):
    """What Telegram's getWebhookInfo says (best effort: absent when Telegram could not be asked)."""

    url: str
    pending_update_count: int
    last_error_message: str | None = None
    last_error_date: datetime | None = None


class TelegramState(BaseModel):
    connected: bool
    bot_username: str | None = None
    mode: TelegramMode | None = None
    status: str | None = Field(default=None, description="connected | webhook_failing | token_rejected")
    webhook: TelegramWebhookHealth | None = None
