"""The per-bot limiter on its own: window guarantees measured on a fake clock-free workload, and 429 handling."""

from __future__ import annotations

import asyncio
import time

import pytest
from telegram.error import Forbidden, RetryAfter

from bot_runtime.channels.limiter import BotLimiter

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_bot_window_holds_even_with_slow_sends() -> None:
    limiter = BotLimiter(max_per_window=5, window=0.2, chat_interval=0.0)
    accepted: list[float] = []

    async def send(delay: float) -> None:
        await asyncio.sleep(delay)  # the server accepts somewhere inside the request
        accepted.append(time.monotonic())

    await asyncio.gather(*(limiter.run(i, lambda i=i: send(0.01 * (i % 3))) for i in range(20)))

    assert len(accepted) == 20
    assert max_in_window(accepted, 0.2) <= 5


async def test_one_chat_gets_one_send_per_interval_without_blocking_others() -> None:
    limiter = BotLimiter(max_per_window=100, window=1.0, chat_interval=0.3)
    done: dict[str, list[float]] = {"busy": [], "other": []}

    async def send(chat: str) -> None:
        done[chat].append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(
        *(limiter.run("busy", lambda: send("busy")) for _ in range(3)), limiter.run("other", lambda: send("other"))
    )

    busy = sorted(done["busy"])
    assert all(b - a >= 0.3 for a, b in zip(busy, busy[1:], strict=False))
    assert done["other"][0] - started < 0.1  # not stuck behind the busy chat


async def test_retry_after_pauses_the_bot_and_retries() -> None:
    limiter = BotLimiter(chat_interval=0.0)
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RetryAfter(1)
        return "ok"

    assert await limiter.run(1, flaky) == "ok"
    assert attempts[1] - attempts[0] >= 1.0


async def test_other_errors_are_not_retried() -> None:
    limiter = BotLimiter()
    calls = 0

    async def blocked() -> None:
        nonlocal calls
        calls += 1
        raise Forbidden("Forbidden: bot was blocked by the user")

    with pytest.raises(Forbidden):
        await limiter.run(1, blocked)
    assert calls == 1


async def test_gives_up_after_too_many_429s() -> None:
    limiter = BotLimiter(max_retries=1, chat_interval=0.0)

    async def always() -> None:
        raise RetryAfter(0)

    with pytest.raises(RetryAfter):
        await limiter.run(1, always)
