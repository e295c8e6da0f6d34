"""Events ingestion throughput: the batched consumer beside a naive per-event-commit baseline, in the same run.

Builds a scratch database (migrated with Alembic) on the server named by TEST_DATABASE_URL, or on a throwaway
embedded PostgreSQL, and uses TEST_REDIS_URL or a throwaway Valkey, under its own key prefix. Then, for each mode,
XADDs realistic Telegram-shaped events (message.in + message.out pairs over many chats and bots, with the odd
chat.unreachable) to an events stream and drains it through ``EventsConsumer.process`` exactly as
``botfactory events-consume`` does: XREADGROUP, ingest in one transaction, commit, XACK.

- batched: COUNT 200 per read, one transaction per batch (the real consumer);
- replay: the same entries delivered again (every event a duplicate, e.g. after a crash before the ack);
- naive: one transaction and one ack per event (COUNT 1), the straightforward design.

Goal: >= 2,000 events/s batched. The naive mode pays one commit (a WAL flush) per event, about 15 ms here, so it
runs on a 1,000-event sample by default (its rate does not depend on the count).
Run: .venv/bin/python bench/events_bench.py [--events 10000] [--naive-events 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bot_runtime import contract, streams  # noqa: E402
from bot_runtime.contract import RuntimeEvent  # noqa: E402
from control_plane.events.consumer import ConsumerSettings, EventsConsumer  # noqa: E402
from control_plane.kit.db import dispose_engine, get_sessionmaker  # noqa: E402
from control_plane.models import Bot, ChatUser, Conversation, Message, Tenant  # noqa: E402
from tests.services import postgres_server, redis_server, scratch_database  # noqa: E402

GOAL_EVENTS_PER_SECOND = 2000

_WORDS = (
    "narx yetkazib berish buyurtma qachon ochiq ish vaqti manzil to'lov karta naqd chegirma aksiya "
    "цена доставка заказ когда открыто адрес оплата карта скидка размер цвет "
    "price delivery order open hours address payment card discount size colour return refund"
).split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def make_events(count: int, tenant_id: str, bot_ids: list[str], *, seed: int, chats: int) -> list[RuntimeEvent]:
    """``count`` events: in/out pairs over ``chats`` chats of the bots, about 1 in 200 a chat.unreachable."""
    rng = random.Random(seed)
    now = time.time() - 3600
    events: list[RuntimeEvent] = []
    update_id = 0
    while len(events) < count:
        update_id += 1
        bot_id = rng.choice(bot_ids)
        chat_id = str(100_000 + rng.randrange(chats))
        chat = {"external_id": chat_id, "name": f"Customer {chat_id}", "username": f"c{chat_id}", "language": "uz"}
        inbound = f"tg:{bot_id}:{seed}{update_id}"
        at = now + update_id * 0.01
        if rng.random() < 0.005:
            events.append(
                RuntimeEvent(
                    f"{inbound}:chat.unreachable:0", "chat.unreachable", tenant_id, bot_id, "telegram", chat, {}, at
                )
            )
            continue
        events.append(
            RuntimeEvent(
                f"{inbound}:message.in:0",
                "message.in",
                tenant_id,
                bot_id,
                "telegram",
                chat,
                {"text": _sentence(rng, rng.randint(4, 20)), "message_id": update_id, "language": "uz"},
                at,
            )
        )
        events.append(
            RuntimeEvent(
                f"{inbound}:message.out:1",
                "message.out",
                tenant_id,
                bot_id,
                "telegram",
                chat,
                {
                    "text": _sentence(rng, rng.randint(20, 80)),
                    "latency_ms": rng.randint(300, 3000),
                    "delivery": "sent",
                    "parts": 1,
                    "language": "uz",
                    "provider": "gemini",
                    "model": "gemini-3.5-flash",
                    "tokens_in": rng.randint(500, 3000),
                    "tokens_out": rng.randint(50, 400),
                    "fallback": rng.random() < 0.1,
                    "sources": [f"chunk-{rng.randrange(500)}" for _ in range(3)],
                    "reply_to": update_id,
                },
                at + 1.2,
            )
        )
    return events[:count]


async def _fill(redis: Redis, stream: str, events: list[RuntimeEvent]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for n, event in enumerate(events, 1):
            pipe.xadd(stream, event.to_fields())
            if n % 1000 == 0:
                await pipe.execute()
        await pipe.execute()


async def _drain(consumer: EventsConsumer, batch_size: int) -> tuple[int, float]:
    """Read and process until the stream has nothing new; returns (entries, seconds)."""
    await streams.ensure_group(consumer.redis, consumer.stream, consumer.group)
    total = 0
    started = time.perf_counter()
    while True:
        # No BLOCK: an empty answer means the stream is drained.
        response = await consumer.redis.xreadgroup(
            consumer.group, consumer.consumer, {consumer.stream: ">"}, count=batch_size
        )
        entries = [(entry_id, fields) for _, raw in response for entry_id, fields in raw] if response else []
        if not entries:
            break
        await consumer.process(entries)
        total += len(entries)
    return total, time.perf_counter() - started


async def bench(events_count: int, naive_count: int) -> int:
    redis = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    sessionmaker = get_sessionmaker()
    async with sessionmaker() as db:
        tenant = Tenant(name="Bench")
        db.add(tenant)
        await db.flush()
        bots = [Bot(tenant_id=tenant.id, name=f"Bot {n}") for n in range(10)]
        db.add_all(bots)
        await db.commit()
    tenant_id, bot_ids = str(tenant.id), [str(bot.id) for bot in bots]

    results: list[tuple[str, int, float, int, int]] = []

    async def run(label: str, events: list[RuntimeEvent], batch_size: int, *, stream: str) -> None:
        await _fill(redis, stream, events)
        settings = ConsumerSettings(batch_size=batch_size)
        consumer = EventsConsumer(redis, sessionmaker, settings, consumer=f"bench:{label}", stream=stream)
        async with sessionmaker() as db:
            before = int(await db.scalar(select(func.count()).select_from(Message)) or 0)
        processed, seconds = await _drain(consumer, batch_size)
        async with sessionmaker() as db:
            after = int(await db.scalar(select(func.count()).select_from(Message)) or 0)
        pending = (await redis.xpending(stream, contract.EVENTS_GROUP))["pending"]
        assert pending == 0, f"{label}: {pending} entries left unacked"
        results.append((label, processed, seconds, after - before, batch_size))

    prefix = contract.prefix()
    # Naive first, on its own bots and chats, so the batched run does not start from a warmer database.
    naive_events = make_events(naive_count, tenant_id, bot_ids[5:], seed=2, chats=max(50, naive_count // 10))
    await run("naive, 1 event per transaction", naive_events, 1, stream=f"{prefix}bench:naive")
    batched_events = make_events(events_count, tenant_id, bot_ids[:5], seed=1, chats=max(100, events_count // 10))
    await run("batched, 200 per transaction", batched_events, 200, stream=f"{prefix}bench:batched")
    # The same events on a fresh stream: every one a duplicate, as after a crash between commit and ack.
    await run("replay of the same events", batched_events, 200, stream=f"{prefix}bench:replay")

    async with sessionmaker() as db:
        chat_users = await db.scalar(select(func.count()).select_from(ChatUser))
        conversations = await db.scalar(select(func.count()).select_from(Conversation))
    await redis.delete(*[key async for key in redis.scan_iter(match=f"{prefix}*")])
    await redis.aclose()
    await dispose_engine()

    print(f"events ingestion, {os.cpu_count()} CPUs, PostgreSQL + Redis on localhost")
    print(f"{'mode':<34} {'events':>7} {'seconds':>8} {'events/s':>9} {'new messages':>13}")
    rates = {}
    for label, processed, seconds, new_messages, _ in results:
        rate = processed / seconds if seconds else 0.0
        rates[label] = rate
        print(f"{label:<34} {processed:>7} {seconds:>8.2f} {rate:>9.0f} {new_messages:>13}")
    batched = rates["batched, 200 per transaction"]
    naive = rates["naive, 1 event per transaction"]
    print(f"batched / naive: {batched / naive:.1f}x; chat users {chat_users}, conversations {conversations}")
    ok = batched >= GOAL_EVENTS_PER_SECOND
    print(f"goal >= {GOAL_EVENTS_PER_SECOND} events/s batched: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--naive-events", type=int, default=1_000)
    args = parser.parse_args()
    with postgres_server() as server, redis_server() as redis_url, scratch_database(server) as database_url:
        os.environ.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": f"bfbench{secrets.token_hex(3)}:",
                "LOG_LEVEL": "WARNING",
            }
        )
        return asyncio.run(bench(args.events, args.naive_events))


if __name__ == "__main__":
    sys.exit(main())
