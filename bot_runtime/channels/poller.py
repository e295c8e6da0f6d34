"""Our own getUpdates loop for polling-mode Telegram bots: nothing is confirmed to Telegram before it is in Redis.

ptb's ``Updater`` advances the offset as soon as it has fetched updates, before any handler ran, so a crash
between the fetch and the reply loses them. Here every update is XADDed to the tenant's inbound stream first (one
MULTI per batch) and only the *next* getUpdates carries ``offset = last + 1``, which is what confirms the batch to
Telegram. A crash in between means Telegram hands the same updates out again; their event ids
(``tg:{bot_id}:{update_id}``) are the same, and the runtime processes each id once.

The same class serves inside a tenant runtime (``wake=False``: the runtime is already up) and in the host-level
poller that long-polls the bots of idle tenants (``wake=True``: a new update starts the tenant's runtime; see
:mod:`bot_runtime.host.pollers`).

Telegram answers 409 to a getUpdates while another one for the same token is pending, and a long poll the client
gave up on stays pending on the server until its timeout. So a bot is polled only by the holder of its poll lock
(:func:`poll_lock_key`, one owner across processes and hosts), and a poller that stops with a long poll in flight
leaves the lock to expire when that poll would have ended: a successor never overlaps it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid

from telegram import Bot
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError

from bot_runtime import contract
from bot_runtime.channels import TELEGRAM_ALLOWED_UPDATES
from bot_runtime.channels.limiter import retry_after_seconds
from bot_runtime.resp import Redis, redis_errors

log = logging.getLogger("bot_runtime.telegram.poller")

UPDATE_KIND = "telegram.update"
DEFAULT_API_BASE_URL = "https://api.telegram.org"
MAX_BACKOFF = 30.0
DEFAULT_POLL_TIMEOUT = 25.0
# How long past a long poll's timeout the server may still hold it (answer in transit), and how long the lock outlives
# that: it is renewed right before every getUpdates, so it means "a poll of the holder may be pending", and a dead
# poller's lock frees itself soon after its last poll has ended on the server.
POLL_SLACK = 2.0
LOCK_MARGIN = 3.0
LOCK_WAIT_INTERVAL = 0.1


class TokenRejected(Exception):
    """Telegram no longer accepts the bot's token (revoked in @BotFather): polling stops for good."""


def poll_timeout_from_env(environ: dict[str, str] | None = None) -> float:
    """The long-poll timeout runtimes and host pollers use: RUNTIME_TELEGRAM_POLL_TIMEOUT seconds (default 25)."""
    raw = (os.environ if environ is None else environ).get("RUNTIME_TELEGRAM_POLL_TIMEOUT", "").strip()
    return float(raw) if raw else DEFAULT_POLL_TIMEOUT


def poll_lock_key(bot_id: str) -> str:
    """Who long-polls the bot right now (a runtime's or a host's poller); value = owner, TTL past its poll."""
    return f"{contract.prefix()}bot:{bot_id}:poller"


def bot_mode(channel: contract.ChannelConfig) -> str:
    """``polling`` or ``webhook``, from the channel's settings (no mode recorded means polling)."""
    return str(channel.settings.get("mode") or "polling")


def api_base_url(channel: contract.ChannelConfig) -> str:
    """The Bot API server for a channel: its ``api_base_url`` setting, else $TELEGRAM_API_BASE_URL, else Telegram."""
    base = str(channel.settings.get("api_base_url") or "") or os.environ.get("TELEGRAM_API_BASE_URL", "")
    return (base or DEFAULT_API_BASE_URL).rstrip("/")


def polling_channels(config: contract.TenantConfig) -> dict[str, contract.ChannelConfig]:
    """The enabled bots of a tenant that are connected to Telegram in polling mode: bot id → channel."""
    found: dict[str, contract.ChannelConfig] = {}
    for bot in config.bots:
        if not bot.is_enabled:
            continue
        channel = next((c for c in bot.channels if c.kind == "telegram" and c.credentials), None)
        if channel is not None and bot_mode(channel) == "polling":
            found[bot.id] = channel
    return found


def update_event(bot_id: str, update: dict[str, object]) -> contract.InboundEvent:
    """The inbound entry for one raw Update (the webhook endpoint builds the same shape)."""
    return contract.InboundEvent(
        event_id=f"tg:{bot_id}:{update['update_id']}",
        bot_id=bot_id,
        kind=UPDATE_KIND,
        payload=update,
        received_at=time.time(),
    )


# KEYS: lock. ARGV: owner, ttl_ms. 1 when the lock is (now) ours, 0 while someone else holds it.
_HOLD = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""

# KEYS: lock. ARGV: owner, keep_ms. Ours: deleted, or kept keep_ms more (a long poll of ours may still be pending).
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""


class PollLock:
    """At most one getUpdates loop per bot across every process and host (Telegram allows one at a time)."""

    def __init__(self, redis: Redis, bot_id: str, owner: str) -> None:
        self.redis = redis
        self.key = poll_lock_key(bot_id)
        self.owner = owner

    async def hold(self, ttl: float) -> bool:
        """Take the lock, or extend it if it is ours; False while another poller holds it."""
        return bool(await self.redis.eval(_HOLD, 1, self.key, self.owner, max(1, int(ttl * 1000))))

    async def release(self, *, keep: float = 0.0) -> None:
        """Give the lock up; ``keep`` > 0 lets it expire only then (a poll of ours may be pending until then)."""
        await self.redis.eval(_RELEASE, 1, self.key, self.owner, max(0, int(keep * 1000)))


class TelegramPoller:
    """Long-polls one bot and queues its updates on the tenant's inbound stream.

    ``bot`` may be any initialized-or-not ``telegram.Bot`` (e.g. an Application's); the poller does not shut it down.
    ``owner`` prefixes this poller's name in the bot's poll lock (e.g. ``runtime:HOST:PID``); the name is unique per
    instance, so a successor in the same process waits for its predecessor's abandoned poll like anyone else.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        tenant_id: str,
        bot_id: str,
        redis: Redis,
        timeout: float = DEFAULT_POLL_TIMEOUT,
        wake: bool = False,
        limit: int = 100,
        owner: str | None = None,
    ) -> None:
        self.bot = bot
        self.tenant_id = tenant_id
        self.bot_id = bot_id
        self.redis = redis
        self.timeout = timeout
        self.wake = wake
        self.limit = limit
        self.lock = PollLock(redis, bot_id, f"{owner or os.getpid()}:{uuid.uuid4().hex[:12]}")
        self.offset: int | None = None  # None until the first batch: Telegram starts at the oldest unconfirmed
        self.queued = 0
        self._failures = 0
        self._unconfirmed = False  # a batch is queued but no getUpdates has carried its offset yet
        self._pending_until = 0.0  # monotonic time until which a getUpdates of ours may be pending on the server

    async def poll_once(self) -> int:
        """One getUpdates round: fetch, XADD the batch, remember ``last + 1`` for the next round. Returns the count."""
        self._pending_until = time.monotonic() + self.timeout + POLL_SLACK
        try:
            updates = await self.bot.get_updates(
                offset=self.offset,
                limit=self.limit,
                timeout=int(self.timeout),
                allowed_updates=list(TELEGRAM_ALLOWED_UPDATES),
            )
        except TelegramError as exc:
            if not isinstance(exc, NetworkError) or isinstance(exc, BadRequest):
                self._pending_until = 0.0  # the server answered: nothing of ours is pending there
            raise
        self._pending_until = 0.0
        self._unconfirmed = False
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
        self._unconfirmed = True
        self.queued += len(updates)
        return len(updates)

    async def confirm(self) -> None:
        """Confirm what was queued without waiting for more (on a clean stop), so a successor starts after it."""
        if self.offset is not None and self._unconfirmed:
            await self.bot.get_updates(offset=self.offset, limit=1, timeout=0)
            self._unconfirmed = False

    async def run(self, stop: asyncio.Event | None = None, *, hand_over: bool = False) -> None:
        """Poll until ``stop`` is set or the task is cancelled; transient trouble backs off, a dead token ends it.

        Polls only while holding the bot's poll lock (waiting for it first). With ``hand_over`` it returns right
        after the first batch it queued, confirmed: the host poller's way of passing an idle bot back to its
        runtime.
        """
        stop = stop or asyncio.Event()
        log.info("telegram.poller.started", extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id})
        try:
            while not stop.is_set():
                try:
                    if not await self._hold_lock(stop):
                        break
                    if not (hand_over and self.queued):  # (else only the confirmation failed: retry just that)
                        await self.poll_once()
                        self._failures = 0
                    if hand_over and self.queued:
                        await self.confirm()
                        return
                except InvalidToken as exc:
                    log.error(
                        "telegram.poller.token_rejected",
                        extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id, "error": type(exc).__name__},
                    )
                    raise TokenRejected(self.bot_id) from None
                except RetryAfter as exc:
                    await self._sleep(stop, retry_after_seconds(exc))
                except Conflict as exc:
                    # Another poller on the same token (one that does not take our lock, or a webhook set
                    # meanwhile): never delete the webhook here (the control plane owns the mode), just step back.
                    await self._back_off(stop, "telegram.poller.conflict", exc)
                except (NetworkError, TelegramError, OSError, *redis_errors()) as exc:
                    await self._back_off(stop, "telegram.poller.error", exc)
            # A clean stop: tell Telegram what we queued, so whoever polls next does not fetch it again (harmless
            # if it did: same event ids). Only under the lock, which a long back-off may have let expire.
            if self._unconfirmed and self._pending_until == 0.0:
                try:
                    if await self.lock.hold(self.timeout + POLL_SLACK + LOCK_MARGIN):
                        await self.confirm()
                except (TelegramError, OSError, *redis_errors()) as exc:
                    log.info("telegram.poller.confirm_failed", extra={"bot_id": self.bot_id, "error": repr(exc)})
        finally:
            await self._release_lock()
            log.info(
                "telegram.poller.stopped",
                extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id, "queued": self.queued},
            )

    async def _hold_lock(self, stop: asyncio.Event) -> bool:
        """Hold the poll lock for one more poll; wait while another poller has it. False when stopped first."""
        ttl = self.timeout + POLL_SLACK + LOCK_MARGIN
        waited = False
        while not await self.lock.hold(ttl):
            if not waited:
                waited = True
                log.info("telegram.poller.waiting", extra={"tenant_id": self.tenant_id, "bot_id": self.bot_id})
            await self._sleep(stop, LOCK_WAIT_INTERVAL)
            if stop.is_set():
                return False
        return True

    async def _release_lock(self) -> None:
        # A long poll abandoned in flight (cancelled) is still pending on the server until its timeout: keep the lock
        # until then, or the next poller's getUpdates would meet it (409).
        keep = max(0.0, self._pending_until - time.monotonic()) if self._pending_until else 0.0
        try:
            await self.lock.release(keep=keep)
        except (*redis_errors(), OSError) as exc:  # it expires by itself
            log.warning("telegram.poller.unlock_failed", extra={"bot_id": self.bot_id, "error": repr(exc)})

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
