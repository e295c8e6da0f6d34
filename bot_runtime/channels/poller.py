"""Our own getUpdates loop for polling-mode Telegram bots: nothing is confirmed to Telegram before it is in Redis.

ptb's ``Updater`` advances the offset as soon as it has fetched updates, before any handler ran, so a crash
between the fetch and the reply loses them. Here every update is XADDed to the tenant's inbound stream first (one
MULTI per batch) and only the *next* getUpdates carries ``offset = last + 1``, which is what confirms the batch to
Telegram. A crash in between means Telegram hands the same updates out again; their event ids
(``tg:{bot_id}:{update_id}``) are the same, and the runtime processes each id once.

The same class serves inside a tenant runtime (``wake=False``: the runtime is already up) and in a host-level poller
that long-polls the bots of idle tenants (``wake=True``: a new update starts the tenant's runtime).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from redis.asyncio import Redis
from telegram import Bot
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError

from bot_runtime import contract
from bot_runtime.channels import TELEGRAM_ALLOWED_UPDATES
from bot_runtime.channels.limiter import retry_after_seconds

log = logging.getLogger("bot_runtime.telegram.poller")

UPDATE_KIND = "telegram.update"
MAX_BACKOFF = 30.0


class TokenRejected(Exception):
    """Telegram no longer accepts the bot's token (revoked in @BotFather): polling stops for good."""


def update_event(bot_id: str, update: dict[str, object]) -> contract.InboundEvent:
    """The inbound entry for one raw Update (the webhook endpoint builds the same shape)."""
    return contract.InboundEvent(
        event_id=f"tg:{bot_id}:{update['update_id']}",
        bot_id=bot_id,
        kind=UPDATE_KIND,
        payload=update,
        received_at=time.time(),
    )


class TelegramPoller:
    """Long-polls one bot and queues its updates on the tenant's inbound stream.

    ``bot`` may be any initialized-or-not ``telegram.Bot`` (e.g. an Application's); the poller does not shut it down.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        tenant_id: str,
        bot_id: str,
        redis: Redis,
        timeout: float = 25.0,
        wake: bool = False,
        limit: int = 100,
    ) -> None:
        self.bot = bot
        self.tenant_id = tenant_id
        self.bot_id = bot_id
        self.redis = redis
        self.timeout = timeout
        self.wake = wake
        self.limit = limit
        self.offset: int | None = None  # None until the first batch: Telegram starts at the oldest unconfirmed
        self.queued = 0
        self._failures = 0

    async def poll_once(self) -> int:
        """One getUpdates round: fetch, XADD the batch, remember ``last + 1`` for the next round. Returns the count."""
        updates = await self.bot.get_updates(
            offset=self.offset,
            limit=self.limit,
            timeout=int(self.timeout),
            allowed_updates=list(TELEGRAM_ALLOWED_UPDATES),
        )
        if not updates:
            return 0
        # ptb's to_dict round-trips through Update.de_json (it keeps unknown fields in api_kwargs).
        events = [update_event(self.bot_id, update.to_dict()) for update in updates]
        async with self.redis.pipeline(transaction=True) as pipe:
            for event in events:
                pipe.xadd(contract.inbound_stream(self.tenant_id), event.to_fields())
            if self.wake:
                pipe.delete(contract.idle_key(self.tenant_id))
                pipe.publish(contract.wake_channel(), self.tenant_id)
            await pipe.execute()
        # Only now may Telegram forget them: the next getUpdates confirms everything below this offset.
        self.offset = updates[-1].update_id + 1
        self.queued += len(updates)
        return len(updates)

    async def confirm(self) -> None:
        """Confirm what was queued without waiting for more (on a clean stop), so a successor starts after it."""
        if self.offset is not None:
            await self.bot.get_updates(offset=self.offset, limit=1, timeout=0)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set or the task is cancelled; transient trouble backs off, a dead token ends it."""
        stop = stop or asyncio.Event()
        log.info("telegram.poller.started", extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id})
        try:
            while not stop.is_set():
                try:
                    await self.poll_once()
                    self._failures = 0
                except InvalidToken as exc:
                    log.error(
                        "telegram.poller.token_rejected",
                        extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id, "error": type(exc).__name__},
                    )
                    raise TokenRejected(self.bot_id) from None
                except RetryAfter as exc:
                    await self._sleep(stop, retry_after_seconds(exc))
                except Conflict as exc:
                    # Another poller on the same token (an old process, or a webhook set meanwhile): never delete
                    # the webhook here (the control plane owns the mode), just step back and try again later.
                    await self._back_off(stop, "telegram.poller.conflict", exc)
                except (NetworkError, TelegramError, OSError) as exc:
                    await self._back_off(stop, "telegram.poller.error", exc)
        finally:
            log.info(
                "telegram.poller.stopped",
                extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id, "queued": self.queued},
            )

    async def _back_off(self, stop: asyncio.Event, event: str, exc: BaseException) -> None:
        self._failures += 1
        delay = min(MAX_BACKOFF, 2 ** min(self._failures - 1, 5)) * (0.75 + random.random() / 2)
        log.warning(
            event,
            extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id, "error": type(exc).__name__, "delay": delay},
        )
        await self._sleep(stop, delay)

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
