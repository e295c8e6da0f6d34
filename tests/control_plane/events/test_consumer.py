"""The consumer against real Redis and PostgreSQL: ack after commit, poison, claims, crash recovery, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import select

from bot_runtime import contract, streams
from bot_runtime.contract import RuntimeEvent
from control_plane.events import consumer as consumer_module
from control_plane.events import service
from control_plane.events.consumer import ConsumerSettings, EventsConsumer, dead_letter_stream
from control_plane.kit.db import get_sessionmaker
from control_plane.models import ChatUser, Conversation, Message
from tests.control_plane.events.helpers import IDLE_GAP, World, count, rows

ROOT = Path(__file__).resolve().parents[3]

FAST = ConsumerSettings(block_ms=100, claim_idle_ms=200, claim_every_seconds=0.2, stop_grace_seconds=2)


async def xadd(redis: Redis, events: Sequence[RuntimeEvent]) -> list[str]:
    return [await redis.xadd(contract.events_stream(), event.to_fields()) for event in events]


async def pending(redis: Redis) -> int:
    """Entries delivered but not acked (-1 while the consumer has not created its group yet)."""
    try:
        summary = await redis.xpending(contract.events_stream(), contract.EVENTS_GROUP)
    except ResponseError:
        return -1
    return int(summary["pending"])


async def wait_for(check: Any, *, within: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def running(redis: Redis) -> AsyncIterator[Any]:
    """Start consumers in this event loop; every one is stopped (and awaited) at the end of the test."""
    started: list[tuple[EventsConsumer, asyncio.Task[None]]] = []

    def start(name: str = "test:1", settings: ConsumerSettings = FAST) -> tuple[EventsConsumer, asyncio.Task[None]]:
        consumer = EventsConsumer(redis, get_sessionmaker(), settings, consumer=name)
        task = asyncio.create_task(consumer.run())
        started.append((consumer, task))
        return consumer, task

    yield start
    for consumer, _ in started:
        consumer.stop("test over")
    await asyncio.gather(*(task for _, task in started))


async def test_events_are_ingested_then_acked(world: World, redis: Redis, running: Any) -> None:
    now = time.time()
    await xadd(redis, [*world.exchange("tg:k:1", at=now), *world.exchange("tg:k:2", chat="1002", at=now)])
    running()
    await wait_for(lambda: count(Message), what="messages stored")
    await wait_for(lambda: _zero(pending(redis)), what="the batch acked")
    assert await count(Message) == 4
    assert await count(ChatUser) == 2
    assert await count(Conversation) == 2


async def _zero(value: Any) -> bool:
    return await value == 0


async def test_poison_entries_are_acked_dead_lettered_and_never_block(world: World, redis: Redis, running: Any) -> None:
    await redis.xadd(contract.events_stream(), {"data": "{broken"})
    await xadd(redis, [world.event("message.in", bot_id=uuid.UUID(int=1))])  # no such bot
    await xadd(redis, world.exchange("tg:p:1"))
    running()
    await wait_for(lambda: count(Message), what="the good events stored")
    await wait_for(lambda: _zero(pending(redis)), what="every entry acked")
    dead = await redis.xrange(dead_letter_stream())
    assert [fields["reason"] for _, fields in dead][0].startswith("unparseable")
    assert "bot no longer exists" in [fields["reason"] for _, fields in dead]
    assert all(fields["entry_id"] for _, fields in dead)


async def test_a_crash_between_commit_and_ack_is_replayed_idempotently(
    world: World, redis: Redis, running: Any
) -> None:
    now = time.time()
    await xadd(redis, [*world.exchange("tg:r:1", at=now), *world.exchange("tg:r:2", chat="7", at=now)])
    # A consumer reads the batch and commits it, then dies before XACK.
    await streams.ensure_group(redis, contract.events_stream(), contract.EVENTS_GROUP)
    batch = await streams.read_new(
        redis, contract.events_stream(), contract.EVENTS_GROUP, "dead-host:4242", count=200, block_ms=100
    )
    assert len(batch) == 4
    async with get_sessionmaker()() as db, db.begin():
        await service.ingest(db, batch, idle_gap=IDLE_GAP)
    assert await pending(redis) == 4
    snapshot = await rows(select(Message.id).order_by(Message.id))

    running("alive:1")  # claims the dead consumer's entries once they have been idle claim_idle_ms
    await wait_for(lambda: _zero(pending(redis)), what="the dead consumer's entries claimed and acked")
    assert await rows(select(Message.id).order_by(Message.id)) == snapshot
    assert await count(Conversation) == 2
    consumers = {c["name"] for c in await redis.xinfo_consumers(contract.events_stream(), contract.EVENTS_GROUP)}
    assert "alive:1" in consumers


async def test_a_vanished_stream_is_recreated_with_its_group(world: World, redis: Redis, running: Any) -> None:
    running()
    await wait_for(lambda: _zero(pending(redis)), what="the group created")
    await redis.delete(contract.events_stream())  # e.g. a Redis flushed under a running consumer
    await xadd(redis, world.exchange("tg:v:1"))
    await wait_for(lambda: _equals(count(Message), 2), what="events after the loss stored")


async def test_an_entry_delivered_too_often_is_dead_lettered(world: World, redis: Redis, running: Any) -> None:
    await xadd(redis, [world.event("message.in")])
    await streams.ensure_group(redis, contract.events_stream(), contract.EVENTS_GROUP)
    [(entry_id, _)] = await streams.read_new(
        redis, contract.events_stream(), contract.EVENTS_GROUP, "crashy:1", count=10, block_ms=100
    )
    for _ in range(3):  # three consumers took it over and died on it
        await redis.xclaim(contract.events_stream(), contract.EVENTS_GROUP, "crashy:2", 0, [entry_id])
    running(settings=FAST.model_copy(update={"max_deliveries": 3}))
    await wait_for(lambda: _zero(pending(redis)), what="the worn entry acked")
    assert await count(Message) == 0
    [(_, fields)] = await redis.xrange(dead_letter_stream())
    assert fields["reason"] == "delivered 5 times without being acked"


async def test_a_failing_entry_is_isolated_and_the_rest_of_its_batch_stored(
    world: World, redis: Redis, running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error (a bug, a value PostgreSQL rejects) must not hold back the other entries of the batch."""
    real_ingest = service.ingest

    async def ingest(db: Any, entries: Any, **kwargs: Any) -> Any:
        if any("explode" in str(fields) for _, fields in entries):
            raise ValueError("cannot store this one")
        return await real_ingest(db, entries, **kwargs)

    monkeypatch.setattr(consumer_module.service, "ingest", ingest)
    await xadd(redis, [*world.exchange("tg:i:1"), world.event("message.in", data={"text": "explode"})])
    await xadd(redis, world.exchange("tg:i:2"))
    running(settings=FAST.model_copy(update={"retry_max_seconds": 0.1}))
    await wait_for(lambda: _zero(pending(redis)), what="every entry acked")
    assert await count(Message) == 4
    [(_, fields)] = await redis.xrange(dead_letter_stream())
    assert "cannot store this one" in fields["reason"]


async def test_database_outage_retries_the_batch_without_acking(
    world: World, redis: Redis, running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ingest = service.ingest
    calls = {"n": 0}

    async def flaky(db: Any, entries: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionRefusedError("database is down")
        return await real_ingest(db, entries, **kwargs)

    monkeypatch.setattr(consumer_module.service, "ingest", flaky)
    await xadd(redis, world.exchange("tg:o:1"))
    running(settings=FAST.model_copy(update={"retry_max_seconds": 0.1}))
    await wait_for(lambda: count(Message), what="stored after the outage")
    await wait_for(lambda: _zero(pending(redis)), what="acked after the outage")
    assert calls["n"] == 3
    assert await redis.xlen(dead_letter_stream()) == 0


async def test_stop_abandons_a_stuck_batch_unacked(
    world: World, redis: Redis, running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()

    async def stuck(db: Any, entries: Any, **kwargs: Any) -> Any:
        started.set()
        await asyncio.sleep(60)

    monkeypatch.setattr(consumer_module.service, "ingest", stuck)
    await xadd(redis, world.exchange("tg:s:1"))
    consumer, task = running(settings=FAST.model_copy(update={"stop_grace_seconds": 0.3}))
    await asyncio.wait_for(started.wait(), 5)
    began = time.monotonic()
    consumer.stop("test")
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - began < 1.5
    assert await pending(redis) == 2  # still pending: another consumer will claim them
    assert await count(Message) == 0


# -- the real process ---------------------------------------------------------------------------------------------


async def test_events_consume_as_a_process_ingests_and_exits_on_sigterm(
    world: World, redis: Redis, tmp_path: Path
) -> None:
    env = {**os.environ, "EVENTS_BLOCK_MS": "200", "LOG_LEVEL": "INFO"}
    log_path = tmp_path / "events.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "control_plane.cli",
            "events-consume",
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        now = time.time()
        events = [event for n in range(50) for event in world.exchange(f"tg:x:{n}", chat=str(n % 7), at=now + n)]
        await xadd(redis, events)
        await wait_for(lambda: _equals(count(Message), 100), within=30, what="100 messages stored by the process")
        await wait_for(lambda: _zero(pending(redis)), within=10, what="acked by the process")
        assert await count(ChatUser) == 7
        assert await count(Conversation) == 7

        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0
        assert time.monotonic() - began < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = log_path.read_text()
    assert '"event": "events.consumer.started"' in output
    assert '"event": "events.consumer.stopped"' in output


async def _equals(value: Any, expected: int) -> bool:
    return await value == expected
