"""Per-chat-user rate limit of the runtime channels: a fixed one-minute window in Redis per (tenant, bot, channel,
chat), RUNTIME_CHAT_MESSAGES_PER_MINUTE messages (default 20; 0 turns it off).

Over the limit a chat gets one short notice per window and no answer. An entry is counted once however often it is
handled (handler retries, redelivery after a crash): its count is kept under a per-event marker.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from bot_runtime import contract, streams
from bot_runtime.i18n import N_
from bot_runtime.resp import Redis

WINDOW_SECONDS = 60
DEFAULT_PER_MINUTE = 20
ENV_NAME = "RUNTIME_CHAT_MESSAGES_PER_MINUTE"

# Shared with the control plane's widget errors on purpose: one msgid, one translation.
RATE_NOTICE = N_("You are sending messages too quickly. Please wait %(seconds)s seconds and try again.")
# The plan's daily limit (``Runtime.count_message``): the once-a-day notice every channel sends, one msgid.
LIMIT_NOTICE = N_("This bot has answered all the messages it can today. Please write again tomorrow.")


def per_minute(environ: dict[str, str] | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(ENV_NAME, "").strip()
    try:
        return max(0, int(raw)) if raw else DEFAULT_PER_MINUTE
    except ValueError:
        return DEFAULT_PER_MINUTE


def window_key(tenant_id: str, bot_id: str, channel: str, chat: str, window: int) -> str:
    return f"{contract.prefix()}tenant:{tenant_id}:chat-rate:{bot_id}:{channel}:{chat}:{window}"


@dataclass(frozen=True, slots=True)
class RateVerdict:
    allowed: bool
    notice: bool = False  # the first refused message of the window: send the notice once
    retry_after: int = 0  # seconds until the window ends


async def check_chat_rate(
    redis: Redis,
    tenant_id: str,
    bot_id: str,
    channel: str,
    chat: str,
    *,
    event_id: str,
    limit: int | None = None,
    now: float | None = None,
) -> RateVerdict:
    """Count one customer message of ``chat``; over ``limit`` in the current minute it is not to be answered."""
    limit = per_minute() if limit is None else limit
    if limit <= 0:
        return RateVerdict(True)
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = window_key(tenant_id, bot_id, channel, chat, window)
    ttl = WINDOW_SECONDS + 5
    count = int(await redis.eval(streams.COUNT_ONCE, 2, key, f"{key}:e:{event_id}", ttl, ttl))  # type: ignore[misc]
    if count <= limit:
        return RateVerdict(True)
    retry_after = max(1, (window + 1) * WINDOW_SECONDS - int(now))
    return RateVerdict(False, notice=count == limit + 1, retry_after=retry_after)
