"""Our getUpdates loop: every update is in the tenant stream before Telegram is told to forget it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from telegram import Bot

from bot_runtime import contract
from bot_runtime.channels.poller import TelegramPoller, TokenRejected
from tests.bot_runtime.channels.helpers import TOKEN
from tests.fakes import FakeTelegramAPI

CHAT = 777


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def bot(telegram: FakeTelegramAPI) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=telegram.api_base_url) as tg_bot:
        yield tg_bot


def poller(bot: Bot, redis: Redis, tenant_id: str, bot_id: str, **kwargs: object) -> TelegramPoller:
    return TelegramPoller(bot, tenant_id=tenant_id, bot_id=bot_id, redis=redis, timeout=1, **kwargs)  # type: ignore[arg-type]


async def stream(redis: Redis, tenant_id: str) -> list[contract.InboundEvent]:
    return [contract.InboundEvent.from_fields(f) for _id, f in await redis.xrange(contract.inbound_stream(tenant_id))]


async def test_updates_are_queued_before_they_are_confirmed(telegram: FakeTelegramAPI, bot: Bot, redis: Redis) -> None:
    tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
    pushed = [telegram.push_text(TOKEN, CHAT, f"m{i}") for i in range(3)]
    first = poller(bot, redis, tenant_id, bot_id)

    assert await first.poll_once() == 3

    events = await stream(redis, tenant_id)
    assert [e.event_id for e in events] == [f"tg:{bot_id}:{u['update_id']}" for u in pushed]
    assert all(e.kind == "telegram.update" and e.bot_id == bot_id for e in events)
    assert events[0].payload["message"]["text"] == "m0"
    # Queued but not yet confirmed: a poller that dies now loses nothing...
    assert len(telegram.pending_updates(TOKEN)) == 3
    successor = poller(bot, redis, tenant_id, bot_id)
    assert await successor.poll_once() == 3  # ...its successor fetches them again (same event ids: deduped later)
    assert [e.event_id for e in await stream(redis, tenant_id)][3:] == [e.event_id for e in events]
    # The next round confirms them.
    assert await successor.poll_once() == 0
    assert telegram.pending_updates(TOKEN) == []


async def test_allowed_updates_are_requested(telegram: FakeTelegramAPI, bot: Bot, redis: Redis) -> None:
    await poller(bot, redis, str(uuid.uuid4()), str(uuid.uuid4())).poll_once()
    (call,) = telegram.calls(TOKEN, "getUpdates")
    assert "my_chat_member" in str(call.params["allowed_updates"])


async def test_wake_mode_wakes_the_idle_runtime(telegram: FakeTelegramAPI, bot: Bot, redis: Redis) -> None:
    tenant_id = str(uuid.uuid4())
    await redis.set(contract.idle_key(tenant_id), "1")
    pubsub = redis.pubsub()
    await pubsub.subscribe(contract.wake_channel())
    try:
        telegram.push_text(TOKEN, CHAT, "wake up")
        await poller(bot, redis, tenant_id, str(uuid.uuid4()), wake=True).poll_once()
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
    finally:
        await pubsub.aclose()
    assert message is not None and message["data"] == tenant_id
    assert await redis.exists(contract.idle_key(tenant_id)) == 0


async def test_conflict_backs_off_and_never_touches_the_webhook(
    telegram: FakeTelegramAPI, bot: Bot, redis: Redis
) -> None:
    tenant_id = str(uuid.uuid4())
    await bot.set_webhook("https://bots.example.com/hook")  # the control plane switched the bot to webhook mode
    subject = poller(bot, redis, tenant_id, str(uuid.uuid4()))
    stop = asyncio.Event()
    task = asyncio.create_task(subject.run(stop))
    await asyncio.sleep(0.3)
    assert not task.done()
    assert [c.status for c in telegram.calls(TOKEN, "getUpdates")] == [409]  # one try, then a back-off
    assert telegram.webhook(TOKEN)["url"] == "https://bots.example.com/hook"

    await bot.delete_webhook()
    telegram.push_text(TOKEN, CHAT, "after the switch back")
    for _ in range(60):
        if await stream(redis, tenant_id):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [e.payload["message"]["text"] for e in await stream(redis, tenant_id)] == ["after the switch back"]


async def test_revoked_token_stops_the_poller(telegram: FakeTelegramAPI, bot: Bot, redis: Redis) -> None:
    telegram.revoke_bot(TOKEN)
    with pytest.raises(TokenRejected):
        await asyncio.wait_for(poller(bot, redis, str(uuid.uuid4()), str(uuid.uuid4())).run(), 5)
