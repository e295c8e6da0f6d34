"""Per-chat-user rate limit of the runtime channels: a fixed one-minute window in Redis per (tenant, bot, channel,
chat), RUNTIME_CHAT_MESSAGES_PER_MINUTE messages (default 20; 0 turns it off).

Over the limit a chat gets one short notice per window and no answer. An entry is counted once however often it is
handled (handler retries, redelivery after a crash): its count is kept under a per-event marker.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from bot_runtime import contract
from bot_runtime.i18n import N_
from bot_runtime.resp import Redis

WINDOW_SECONDS = 60
DEFAULT_PER_MINUTE = 20
ENV_NAME = "RUNTIME_CHAT_MESSAGES_PER_MINUTE"

# Shared with the control plane's widget errors on purpose: one msgid, one translation.
RATE_NOTICE = N_("You are sending messages too quickly. Please wait %(seconds)s seconds and try again.")

# KEYS: window counter, per-event marker. ARGV: TTL. Returns the event's count in the window, INCRed only once.
_COUNT_ONCE = """
local counted = redis.call('GET', KEYS[2])
if counted then return tonumber(counted) end
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
redis.call('SET', KEYS[2], count, 'EX', ARGV[1])
return count
"""


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
    count = int(await redis.eval(_COUNT_ONCE, 2, key, f"{key}:e:{event_id}", WINDOW_SECONDS + 5))  # type: ignore[misc]
    if count <= limit:
        return RateVerdict(True)
    retry_after = max(1, (window + 1) * WINDOW_SECONDS - int(now))
    return RateVerdict(False, notice=count == limit + 1, retry_after=retry_after)
