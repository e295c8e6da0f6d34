"""End to end inside one process: the real runtime core loads a polling bot from its Redis config, our poller queues
the customer's message, the core hands the entry to this channel, and the answer reaches the fake Telegram. Without
traffic the runtime then goes idle, its poller stopped cleanly (the host's idle poller takes the bot over)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from redis.asyncio import Redis

from bot_runtime import contract, runtime
from bot_runtime.channels import telegram as channel_module
from bot_runtime.channels.poller import poll_lock_key
from bot_runtime.runtime import Runtime, RuntimeSettings
from tests.bot_runtime.channels.helpers import TOKEN, tenant_config
from tests.fakes import FakeTelegramAPI

CHAT = 777


async def test_runtime_answers_a_polling_bot(telegram: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh process-wide channel with a short long poll (the runtime's channel is created on first use).
    monkeypatch.setenv("RUNTIME_TELEGRAM_POLL_TIMEOUT", "1")
    monkeypatch.setattr(channel_module, "_channel", None)
    tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
    config = tenant_config(tenant_id, bot_id, mode="polling", api_base_url=telegram.base_url)
    redis = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    await redis.set(contract.config_key(tenant_id), config.to_json())
    subject = Runtime(
        RuntimeSettings(tenant_id=tenant_id, redis_url=os.environ["REDIS_URL"], idle_seconds=2, claim_every_seconds=0.2)
    )
    task = asyncio.create_task(subject.run())
    try:
        telegram.push_text(TOKEN, CHAT, "/start")
        telegram.push_text(TOKEN, CHAT, "hello")
        sent = await telegram.await_sent(TOKEN, CHAT, count=2, within=10)
        assert [m.text for m in sent] == ["Welcome to Shop!", "Hello! How can I help you?"]
        assert str(await redis.get(poll_lock_key(bot_id))).startswith("runtime:")
        # Everything was acknowledged, and the events went out with the ack.
        for _ in range(40):
            pending = await redis.xpending(contract.inbound_stream(tenant_id), contract.RUNTIME_GROUP)
            if int(pending["pending"]) == 0:
                break
            await asyncio.sleep(0.05)
        assert int(pending["pending"]) == 0
        events = [
            contract.RuntimeEvent.from_fields(fields) for _id, fields in await redis.xrange(contract.events_stream())
        ]
        mine = [e for e in events if e.tenant_id == tenant_id]
        assert [e.type for e in mine] == ["message.in", "message.out", "message.in", "message.out"]
        assert {e.channel for e in mine} == {"telegram"}
        # A polling tenant goes idle like any other: the poller stops at the end of its long poll and frees the bot.
        assert await asyncio.wait_for(task, 10) == contract.EXIT_IDLE
        assert await redis.exists(contract.idle_key(tenant_id)) == 1
        assert await redis.exists(poll_lock_key(bot_id)) == 0
        assert telegram.pending_updates(TOKEN) == []
        assert [c.status for c in telegram.calls(TOKEN, "getUpdates") if c.status != 200] == []
    finally:
        subject.stop(0, "test over")
        await asyncio.wait_for(task, 10)
        await redis.aclose()
    # The shutdown hook stopped the poller and closed the bots.
    assert channel_module.channel().bots == {}
    assert runtime.handler_for("telegram.update") is not None
