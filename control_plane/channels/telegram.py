"""The control plane's Bot API calls (getMe, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands).

Calls go through python-telegram-bot's ``Bot`` with ``base_url = TELEGRAM_API_BASE_URL + "/bot"``, so a fake or
self-hosted Bot API server replaces Telegram by configuration alone. ptb's errors become our translated AppErrors,
and nothing that could carry the token (ptb puts it in InvalidToken's text) reaches a log line or a response.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from telegram import Bot, BotCommand, WebhookInfo
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from bot_runtime.channels import TELEGRAM_ALLOWED_UPDATES, TELEGRAM_COMMAND_LANGUAGES, TELEGRAM_COMMANDS
from bot_runtime.i18n import gettext, use_locale
from control_plane.channels.errors import TelegramRequestFailed, TelegramTokenRejected, TelegramUnavailable
from control_plane.settings import get_settings

log = logging.getLogger("botfactory.channels.telegram")


@dataclass(frozen=True, slots=True)
class TelegramIdentity:
    """The bot as getMe describes it."""

    id: int
    username: str
    first_name: str


def api_base_url() -> str:
    return get_settings().telegram_api_base_url.rstrip("/")


class TelegramClient:
    """One short-lived connection to the Bot API for one token: ``async with TelegramClient(token) as tg: ...``."""

    def __init__(self, token: str, *, timeout: float | None = None) -> None:
        self._token = token
        seconds = timeout if timeout is not None else get_settings().http_timeout_seconds
        self._request = HTTPXRequest(
            connection_pool_size=2,
            connect_timeout=seconds,
            read_timeout=seconds,
            write_timeout=seconds,
            pool_timeout=seconds,
        )
        base = api_base_url()
        # One request object serves both of ptb's pools: we never long-poll from the control plane.
        self._bot = Bot(
            token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=self._request,
            get_updates_request=self._request,
        )

    async def __aenter__(self) -> Self:
        await self._request.initialize()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._request.shutdown()

    @contextlib.asynccontextmanager
    async def _call(self, method: str) -> AsyncIterator[None]:
        """Translate ptb errors into AppErrors, logging only what cannot contain the token."""
        try:
            yield
        except InvalidToken:
            log.info("telegram.api.token_rejected", extra={"method": method})
            raise TelegramTokenRejected() from None
        except RetryAfter:
            log.warning("telegram.api.flood", extra={"method": method})
            raise TelegramUnavailable() from None
        except BadRequest as exc:
            log.warning("telegram.api.refused", extra={"method": method, "error": self._redacted(exc)})
            raise TelegramRequestFailed() from None
        except (TimedOut, NetworkError) as exc:
            log.warning("telegram.api.unreachable", extra={"method": method, "error": self._redacted(exc)})
            raise TelegramUnavailable() from None
        except TelegramError as exc:
            log.warning("telegram.api.failed", extra={"method": method, "error": self._redacted(exc)})
            raise TelegramRequestFailed() from None

    def _redacted(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}".replace(self._token, "<token>")[:300]

    async def get_me(self) -> TelegramIdentity:
        async with self._call("getMe"):
            user = await self._bot.get_me()
        return TelegramIdentity(id=user.id, username=user.username or "", first_name=user.first_name)

    async def set_webhook(self, url: str, *, secret_token: str) -> None:
        async with self._call("setWebhook"):
            await self._bot.set_webhook(
                url, secret_token=secret_token, allowed_updates=list(TELEGRAM_ALLOWED_UPDATES), max_connections=40
            )

    async def delete_webhook(self) -> None:
        async with self._call("deleteWebhook"):
            await self._bot.delete_webhook(drop_pending_updates=False)

    async def webhook_info(self) -> WebhookInfo:
        async with self._call("getWebhookInfo"):
            return await self._bot.get_webhook_info()

    async def set_commands(self) -> None:
        """Publish /start and /help with descriptions in every language we speak (and English as the default)."""
        for language in ("", *TELEGRAM_COMMAND_LANGUAGES):
            with use_locale(language or "en"):
                commands = [BotCommand(name, gettext(description)) for name, description in TELEGRAM_COMMANDS]
            async with self._call("setMyCommands"):
                await self._bot.set_my_commands(commands, language_code=language or None)
