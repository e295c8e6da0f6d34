"""Idle scale-to-zero for polling bots: the host's idle poller long-polls an idle tenant's Telegram bots and wakes it.

The end-to-end test runs a real host agent (real supervisord, real Redis) against the fake Bot API: a polling tenant
goes idle, its host keeps the lease and polls the bot, a customer's message wakes the runtime and is answered once,
and the fake never saw two getUpdates for the token at a time (it answers 409 to the second). The poll lock that
makes the hand-over safe, and counting each customer message once toward the daily limit, are tested in-process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from telegram import Bot

from bot_runtime import contract
from bot_runtime.channels.poller import TelegramPoller, poll_lock_key
from bot_runtime.crypto import encrypt_json
from bot_runtime.runtime import HandlerContext, Runtime, RuntimeSettings, register_handler, utc_day
from tests.bot_runtime.conftest import Processes, pid_alive, publish, wait_for
from tests.fakes import FakeTelegramAPI, make_token

TOKEN = make_token(515151)
POLL_TIMEOUT = 2  # seconds; the fake holds a long poll at most 2 s anyway


@pytest.fixture(scope="module")
def _telegram_server() -> Iterator[FakeTelegramAPI]:
    fake = FakeTelegramAPI()
    with fake.serve():
        yield fake


@pytest.fixture
def telegram(_telegram_server: FakeTelegramAPI) -> FakeTelegramAPI:
    _telegram_server.reset()
    _telegram_server.register_bot(TOKEN, username="idle_shop_bot", first_name="Shop")
    return _telegram_server


def polling_bot(bot_id: str, telegram: FakeTelegramAPI) -> contract.BotConfig:
    channel = contract.ChannelConfig(
        kind="telegram",
        credentials=encrypt_json({"token": TOKEN}),
        settings={"mode": "polling", "username": "idle_shop_bot", "api_base_url": telegram.base_url},
    )
    return contract.BotConfig(
        id=bot_id, public_id=f"p_{bot_id}", name="Shop", welcome_message="Welcome!", channels=[channel]
    )


def conflicts(telegram: FakeTelegramAPI) -> list[int]:
    return [call.status for call in telegram.calls(TOKEN, "getUpdates") if call.status == 409]


async def _state(redis: Redis, tenant_id: str, state: str) -> dict[str, str] | None:
    stats = await redis.hgetall(contract.runtime_stats_key(tenant_id))
    return stats if stats.get("state") == state else None


async def _host_polls(redis: Redis, bot_id: str) -> bool:
    return str(await redis.get(poll_lock_key(bot_id)) or "").startswith("host:")


async def test_idle_polling_tenant_is_woken_by_its_hosts_poller(
    redis: Redis, procs: Processes, telegram: FakeTelegramAPI
) -> None:
    tenant, bot_id = procs.new_tenant(), "b" + uuid.uuid4().hex[:8]
    await publish(redis, tenant, bots=[polling_bot(bot_id, telegram)])
    host = procs.start_host("idlepoll", RUNTIME_IDLE_SECONDS="2", RUNTIME_TELEGRAM_POLL_TIMEOUT=str(POLL_TIMEOUT))
    chats = iter(range(9001, 9100))  # one chat per message: each must get exactly one answer
    asked: list[int] = []

    async def ask(text: str) -> float:
        """Push a message, wait for its answer; the seconds in between (by the fake's clock)."""
        chat = next(chats)
        asked.append(chat)
        pushed = time.monotonic()
        telegram.push_text(TOKEN, chat, text)
        (answer,) = await telegram.await_sent(TOKEN, chat, within=15)
        return answer.at - pushed

    # Running: the runtime polls its bot itself.
    ready = await wait_for(lambda: redis.hgetall(contract.ready_key(tenant)), within=15, what="the runtime")
    await ask("hello while running")
    assert str(await redis.get(poll_lock_key(bot_id))).startswith("runtime:idlepoll:")

    # No traffic for RUNTIME_IDLE_SECONDS: the runtime stops its poller and exits, the host keeps the lease and the
    # idle poller takes the bot over.
    await wait_for(lambda: _state(redis, tenant, "idle"), within=15, what="stats: idle")
    assert await redis.exists(contract.idle_key(tenant)) == 1
    assert str(await redis.get(contract.lease_key(tenant))).startswith("idlepoll:")
    assert not host.program_file(tenant).exists()
    assert not pid_alive(int(ready["pid"]))
    await wait_for(lambda: _host_polls(redis, bot_id), within=2 * POLL_TIMEOUT + 5, what="the host poller")

    # A customer writes: the host poller queues the update, wakes the runtime, and the runtime answers.
    wake_to_answer = await ask("hello, anybody there?")
    assert await redis.exists(contract.idle_key(tenant)) == 0
    # Messages right behind the wake-up, while the bot passes from the host's poller to the runtime's.
    asked_during = [asyncio.create_task(ask(f"and another thing {index}")) for index in range(3)]
    await asyncio.gather(*asked_during)

    # Idle again, woken again: the hand-over works every time, in both directions.
    await wait_for(lambda: _state(redis, tenant, "idle"), within=15, what="stats: idle again")
    await wait_for(lambda: _host_polls(redis, bot_id), within=2 * POLL_TIMEOUT + 5, what="the host poller again")
    second_wake = await ask("me again")

    await asyncio.sleep(1.0)  # a late duplicate would show up by now
    for chat in asked:
        assert len(telegram.sent_messages(TOKEN, chat)) == 1, f"chat {chat}: {telegram.sent_texts(TOKEN, chat)}"
    assert conflicts(telegram) == [], "two getUpdates for one token overlapped"
    assert telegram.pending_updates(TOKEN) == []
    assert int(await redis.get(contract.usage_key(tenant, utc_day())) or 0) == len(asked)
    print(
        f"\nidle polling tenant: wake → answer {wake_to_answer * 1000:.0f} ms, second wake {second_wake * 1000:.0f} ms"
        f" (poll timeout {POLL_TIMEOUT} s)"
    )
    assert wake_to_answer < 5 and second_wake < 5  # generous: shared CI machines; the printed figure is the result


async def test_an_idle_tenant_moves_with_its_poller_when_its_host_dies(
    redis: Redis, procs: Processes, telegram: FakeTelegramAPI
) -> None:
    tenant, bot_id = procs.new_tenant(), "b" + uuid.uuid4().hex[:8]
    env = {"RUNTIME_IDLE_SECONDS": "1", "RUNTIME_TELEGRAM_POLL_TIMEOUT": str(POLL_TIMEOUT)}
    first = procs.start_host("ida", **env)
    await publish(redis, tenant, bots=[polling_bot(bot_id, telegram)])
    await wait_for(lambda: _state(redis, tenant, "idle"), within=15, what="stats: idle")
    await wait_for(lambda: _host_polls(redis, bot_id), within=2 * POLL_TIMEOUT + 5, what="the first host's poller")
    second = procs.start_host("idb", **env)
    await wait_for(lambda: redis.exists(contract.host_key("idb")), within=10, what="the second host")

    supervisord = first.supervisord_pid
    assert supervisord
    os.kill(first.process.pid, signal.SIGKILL)
    os.kill(supervisord, signal.SIGKILL)

    async def polled_by_second() -> bool:
        return str(await redis.get(poll_lock_key(bot_id)) or "").startswith("host:idb:")

    # The lease expires (3 s), the living host takes the tenant over still idle, and polls its bot once the dead
    # host's last long poll is over.
    await wait_for(polled_by_second, within=20, what="the living host's poller")
    assert str(await redis.get(contract.lease_key(tenant))).startswith("idb:")
    assert await redis.exists(contract.idle_key(tenant)) == 1
    assert second.process.poll() is None
    telegram.push_text(TOKEN, 4242, "anyone home?")
    await telegram.await_sent(TOKEN, 4242, within=15)
    assert conflicts(telegram) == []


# ---------------------------------------------------------------------------------------------------------------
# In-process: the poll lock, and counting once per event


@pytest.fixture
async def local_redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client
    await client.aclose()


async def _stream_texts(redis: Redis, tenant_id: str) -> list[str]:
    entries = await redis.xrange(contract.inbound_stream(tenant_id))
    return [contract.InboundEvent.from_fields(fields).payload["message"]["text"] for _id, fields in entries]


async def test_poll_lock_passes_a_bot_between_pollers_without_overlap(
    telegram: FakeTelegramAPI, local_redis: Redis
) -> None:
    tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with Bot(TOKEN, base_url=telegram.api_base_url) as bot:

        def poller(owner: str) -> TelegramPoller:
            return TelegramPoller(bot, tenant_id=tenant_id, bot_id=bot_id, redis=local_redis, timeout=1, owner=owner)

        first, second = poller("first"), poller("second")
        first_stop, second_stop = asyncio.Event(), asyncio.Event()
        first_task = asyncio.create_task(first.run(first_stop))
        await wait_for(lambda: local_redis.get(poll_lock_key(bot_id)), within=3, what="the first poller's lock")
        second_task = asyncio.create_task(second.run(second_stop))  # waits for the lock
        telegram.push_text(TOKEN, 1, "m1")
        await wait_for(lambda: _stream_texts(local_redis, tenant_id), within=3, what="m1 queued")
        assert str(await local_redis.get(poll_lock_key(bot_id))).startswith("first:")

        # Abandoned mid-poll: the lock outlives the poll still pending on the server (a getUpdates meeting it would
        # get a 409), then the second poller takes over.
        await asyncio.sleep(0.2)
        first_task.cancel()
        await asyncio.gather(first_task, return_exceptions=True)

        async def second_holds() -> bool:
            return str(await local_redis.get(poll_lock_key(bot_id))).startswith("second:")

        await wait_for(second_holds, within=6, what="the hand-over")
        telegram.push_text(TOKEN, 2, "m2")
        telegram.push_text(TOKEN, 3, "m3")

        async def all_queued() -> bool:
            return {"m2", "m3"} <= set(await _stream_texts(local_redis, tenant_id))

        await wait_for(all_queued, within=5, what="m2 and m3 queued")
        # A clean stop confirms what was queued and frees the lock at once.
        second_stop.set()
        await asyncio.wait_for(second_task, 5)
    assert await local_redis.exists(poll_lock_key(bot_id)) == 0
    assert telegram.pending_updates(TOKEN) == []
    assert sorted(set(await _stream_texts(local_redis, tenant_id))) == ["m1", "m2", "m3"]
    assert conflicts(telegram) == []


COUNT_KIND = "test.count_once"
_attempts: dict[str, int] = {}
_verdicts: dict[str, list[bool]] = {}


async def _count_once(ctx: HandlerContext) -> None:
    """Counts the message, then fails its first attempt when asked to (the core retries the entry)."""
    event_id = ctx.event.event_id
    _attempts[event_id] = _attempts.get(event_id, 0) + 1
    _verdicts.setdefault(event_id, []).append(await ctx.count_message())
    if ctx.event.payload.get("fail_first") and _attempts[event_id] == 1:
        raise RuntimeError("the first attempt fails after counting")
    await ctx.deliver(lambda: ctx.redis.xadd(contract.outbox_stream(ctx.tenant_id), {"event_id": event_id}))


register_handler(COUNT_KIND, _count_once)


async def test_a_retried_or_redelivered_entry_counts_once(local_redis: Redis) -> None:
    tenant_id = "t" + uuid.uuid4().hex[:12]
    config = contract.TenantConfig(
        tenant_id=tenant_id,
        version=1,
        plan=contract.PlanLimits(messages_per_day=2),
        bots=[contract.BotConfig("b1", "p", "B")],
    )
    await local_redis.set(contract.config_key(tenant_id), config.to_json())
    stream = contract.inbound_stream(tenant_id)

    async def queue(event_id: str, **payload: object) -> None:
        event = contract.InboundEvent(event_id, "b1", COUNT_KIND, dict(payload), time.time())
        await local_redis.xadd(stream, event.to_fields())

    # A runtime that read "redelivered", counted it, and died before answering: its entry stays pending.
    await local_redis.xgroup_create(stream, contract.RUNTIME_GROUP, id="0", mkstream=True)
    await queue("redelivered")
    await local_redis.xreadgroup(contract.RUNTIME_GROUP, "dead:1", {stream: ">"}, count=1)
    dead = Runtime(RuntimeSettings(tenant_id=tenant_id, redis_url=os.environ["REDIS_URL"]), redis=local_redis)
    assert await dead.count_message(config, event_id="redelivered")
    await queue("retried", fail_first=True)
    await queue("third")

    subject = Runtime(
        RuntimeSettings(
            tenant_id=tenant_id,
            redis_url=os.environ["REDIS_URL"],
            claim_idle_ms=200,
            claim_every_seconds=0.1,
            idle_seconds=0,
        )
    )
    task = asyncio.create_task(subject.run())
    try:

        async def answered() -> bool:
            return len(await local_redis.xrange(contract.outbox_stream(tenant_id))) == 3

        await wait_for(answered, within=10, what="three answers")
    finally:
        subject.stop(0, "test over")
        await asyncio.wait_for(task, 10)
    assert _attempts["retried"] == 2 and _verdicts["retried"] == [True, True]  # one count, one verdict
    assert _verdicts["redelivered"] == [True]  # the dead runtime's count stands
    assert _verdicts["third"] == [False]  # the third message of a 2-a-day plan
    assert int(await local_redis.get(contract.usage_key(tenant_id, utc_day()))) == 3
