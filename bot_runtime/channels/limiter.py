"""One send limiter per Telegram bot, shared by replies and broadcasts: ≤ 30 messages/s per bot, ≤ 1/s per chat.

Telegram measures flood limits on its side, when it accepts a message, and the time between our send and its
acceptance varies. A plain token bucket (which also allows a full burst on top of its rate) therefore cannot promise
"no 1-second window with more than 30". This limiter can, because a slot is counted from the moment its request
*completes*: a token spent on a send comes back one window after Telegram answered it. Every acceptance lies between
the start and the end of its request, so the 31st send, started ≥ 1 window after the 1st one finished, is accepted
≥ 1 window after the 1st one was. The same holds per chat with one send in flight and ≥ 1 s between them.

A 429 ``retry_after`` pauses the whole bot (Telegram's flood control is per bot; ptb's AIORateLimiter does the same)
and the send is retried once the pause is over. Other errors, 403 included, go to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import TypeVar

from telegram.error import RetryAfter

from bot_runtime.channels import TELEGRAM_CHAT_INTERVAL_SECONDS, TELEGRAM_MAX_PER_SECOND

T = TypeVar("T")
log = logging.getLogger("bot_runtime.telegram.limiter")

# Clock resolution and float rounding: a gap of "exactly one window" must never be measured as a hair less.
_EPSILON = 0.005


def retry_after_seconds(exc: RetryAfter) -> float:
    """The wait a 429 asks for, in seconds (ptb ≥ 22.2 keeps it as a timedelta; reading it as int is deprecated)."""
    value = getattr(exc, "_retry_after", None)
    if isinstance(value, dtm.timedelta):
        return max(value.total_seconds(), 0.0)
    return float(getattr(exc, "retry_after", 1) or 1)  # pragma: no cover - older ptb


class BotLimiter:
    """Sliding-window limits for one bot: ``max_per_window`` sends per ``window`` and one per chat per ``interval``.

    Use :meth:`run` for a send (it also honours 429s) or :meth:`slot` around a call that must count as one send.
    """

    def __init__(
        self,
        *,
        max_per_window: int = TELEGRAM_MAX_PER_SECOND,
        window: float = 1.0,
        chat_interval: float = TELEGRAM_CHAT_INTERVAL_SECONDS,
        max_retries: int = 5,
        max_retry_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_per_window < 1 or window <= 0:
            raise ValueError("max_per_window must be ≥ 1 and window > 0")
        self.max_per_window = max_per_window
        self.window = window
        self.chat_interval = chat_interval
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self._clock = clock
        self._finished: deque[float] = deque()  # completion times of sends still inside the window
        self._inflight = 0
        self._paused_until = 0.0
        self._changed = asyncio.Condition()
        # Per chat: a lock (one send in flight) and the earliest start of the next send. Entries are dropped when
        # idle, so a broadcast to 100 000 chats does not leave 100 000 locks behind.
        self._chats: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        self._chat_next: dict[Hashable, float] = {}

    # -- public ---------------------------------------------------------------------------------------------------

    async def run(self, chat_id: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Send through the limits: wait for a chat and a bot slot, call, and retry after a 429's ``retry_after``."""
        attempt = 0
        while True:
            async with self.slot(chat_id):
                try:
                    return await call()
                except RetryAfter as exc:
                    attempt += 1
                    delay = retry_after_seconds(exc)
                    if attempt > self.max_retries or delay > self.max_retry_after:
                        raise
                    log.warning("telegram.flood.retry_after", extra={"retry_after": delay, "attempt": attempt})
                    self.pause(delay)

    @contextlib.asynccontextmanager
    async def slot(self, chat_id: Hashable) -> AsyncIterator[None]:
        """Hold one send slot for ``chat_id`` for the duration of the block (the send's request)."""
        lock = self._chat_lock(chat_id)
        try:
            async with lock:
                await self._wait_for_chat(chat_id)
                await self._take_bot_slot()
                try:
                    yield
                finally:
                    finished = self._clock()
                    self._chat_next[chat_id] = finished + self.chat_interval + _EPSILON
                    await self._release_bot_slot(finished)
        finally:
            self._chat_unused(chat_id)

    def pause(self, seconds: float) -> None:
        """Hold every send of this bot for ``seconds`` (after a 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    # -- internals ------------------------------------------------------------------------------------------------

    def _chat_lock(self, chat_id: Hashable) -> asyncio.Lock:
        lock, users = self._chats.get(chat_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._chats[chat_id] = (lock, users + 1)
        return lock

    def _chat_unused(self, chat_id: Hashable) -> None:
        lock, users = self._chats[chat_id]
        if users <= 1:
            del self._chats[chat_id]
            # Keep the spacing marker only while it still matters.
            if self._chat_next.get(chat_id, 0.0) <= self._clock():
                self._chat_next.pop(chat_id, None)
        else:
            self._chats[chat_id] = (lock, users - 1)
        if len(self._chat_next) > 10_000:
            now = self._clock()
            for key in [key for key, at in self._chat_next.items() if at <= now]:
                del self._chat_next[key]

    async def _wait_for_chat(self, chat_id: Hashable) -> None:
        while True:
            delay = self._chat_next.get(chat_id, 0.0) - self._clock()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def _take_bot_slot(self) -> None:
        async with self._changed:
            while True:
                now = self._clock()
                while self._finished and self._finished[0] + self.window + _EPSILON <= now:
                    self._finished.popleft()
                if self._paused_until > now:
                    timeout: float | None = self._paused_until - now
                elif len(self._finished) + self._inflight < self.max_per_window:
                    self._inflight += 1
                    return
                else:
                    # Full: the oldest finished send frees its slot one window after it finished; a send still in
                    # flight frees nothing until it finishes (and notifies).
                    timeout = self._finished[0] + self.window + _EPSILON - now if self._finished else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)

    async def _release_bot_slot(self, finished: float) -> None:
        async with self._changed:
            self._inflight -= 1
            self._finished.append(finished)
            self._changed.notify_all()
