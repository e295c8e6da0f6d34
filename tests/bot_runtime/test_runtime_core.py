"""The runtime core against real Redis: nothing lost on kill -9, duplicates once, reloads, lease loss, idle exit.

Runtimes run as real ``python -m bot_runtime`` processes holding a lease the test writes itself (host
``testhost``); the ``test.echo`` handler answers into the tenant's outbox stream, so replies can be counted.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot_runtime import contract
from bot_runtime.crypto import SecretKeyError, decrypt_json, encrypt_json
from bot_runtime.runtime import Runtime, RuntimeSettings
from tests.bot_runtime.conftest import Processes, outbox, publish, queue_echo, wait_for


async def _lease(redis: Redis, tenant_id: str, token: int = 1) -> None:
    await redis.set(contract.lease_key(tenant_id), f"testhost:{token}")


async def _ready_pid(redis: Redis, tenant_id: str) -> int:
    return int(await redis.hget(contract.ready_key(tenant_id), "pid") or 0)


async def _wait_exit(process: object, within: float) -> int:
    async def done() -> bool:
        return process.poll() is not None  # type: ignore[attr-defined]

    await wait_for(done, within=within, what="the runtime to exit")
    return int(process.returncode)  # type: ignore[attr-defined]


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_nothing_lost_when_the_runtime_is_killed(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    await _lease(redis, tenant)
    expected = [f"e{index:02d}" for index in range(30)]
    for event_id in expected:
        await queue_echo(redis, tenant, event_id, delay=0.08)
    # Redeliveries of already queued ids (Telegram resending an update) must be answered once.
    await queue_echo(redis, tenant, "e03", text="resent")
    await queue_echo(redis, tenant, "e17", text="resent")

    first = procs.start_runtime(tenant)

    async def some_answered() -> bool:
        return len(await outbox(redis, tenant)) >= 10

    await wait_for(some_answered, within=10, what="ten answers")
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    answered_before = len(await outbox(redis, tenant))

    started = time.monotonic()
    second = procs.start_runtime(tenant, name="rt2")

    async def all_answered() -> bool:
        replies = {reply["event_id"] for reply in await outbox(redis, tenant)}
        pending = await redis.xpending(contract.inbound_stream(tenant), contract.RUNTIME_GROUP)
        return replies >= set(expected) and int(pending["pending"]) == 0

    await wait_for(all_answered, within=15, what="every message answered and acked")
    recovery = time.monotonic() - started

    replies = await outbox(redis, tenant)
    counts = collections.Counter(reply["event_id"] for reply in replies)
    twice = [event_id for event_id, count in counts.items() if count > 1]
    assert set(counts) == set(expected), "lost messages"
    assert len(twice) <= 1, f"answered twice: {twice}"
    assert all(reply["text"] != "resent" for reply in replies), "a duplicate update was processed"
    assert {reply["pid"] for reply in replies} == {str(first.pid), str(second.pid)}
    assert 10 <= answered_before < 30
    # Events reach the events stream exactly like the replies: every message has its message.out.
    events = [contract.RuntimeEvent.from_fields(fields) for _id, fields in await redis.xrange(contract.events_stream())]
    outs = {event.event_id for event in events if event.tenant_id == tenant and event.type == "message.out"}
    assert {event_id.split(":")[0] for event_id in outs} == set(expected)
    print(f"\nkill -9 after {answered_before} answers; rest answered {recovery:.2f} s after restart; twice: {twice}")
    assert second.poll() is None


async def test_sent_marker_skips_the_resend(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    await _lease(redis, tenant)
    # e1's reply went out just before a crash (marker written, entry not acked): it must not be answered again.
    await redis.set(contract.sent_key(tenant, "e1"), "1")
    await queue_echo(redis, tenant, "e1")
    await queue_echo(redis, tenant, "e2")
    procs.start_runtime(tenant)

    async def acked() -> bool:
        info = await redis.xinfo_groups(contract.inbound_stream(tenant))
        return bool(info) and int(info[0]["pending"]) == 0 and info[0]["last-delivered-id"] != "0-0"

    async def e2_answered() -> bool:
        return any(reply["event_id"] == "e2" for reply in await outbox(redis, tenant))

    await wait_for(e2_answered, within=10, what="e2's answer")
    await wait_for(acked, within=5, what="both entries acked")
    assert [reply["event_id"] for reply in await outbox(redis, tenant)] == ["e2"]


async def test_config_reloads_without_restart(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    first = await publish(redis, tenant)
    await _lease(redis, tenant)
    process = procs.start_runtime(tenant)

    async def ready_version() -> int:
        return int(await redis.hget(contract.ready_key(tenant), "version") or 0)

    await wait_for(ready_version, within=10, what="ready")
    assert await ready_version() == first.version

    started = time.monotonic()
    second = await publish(redis, tenant, bots=[contract.BotConfig(id="b1", public_id="p", name="Renamed")])

    async def reloaded_to(version: int) -> bool:
        return await ready_version() == version

    await wait_for(lambda: reloaded_to(second.version), within=3, what="the pub/sub reload")
    pubsub_latency = time.monotonic() - started

    # A dropped notice: the document and counter change but nothing is published; the poll finds it.
    third = contract.TenantConfig.from_json(await redis.get(contract.config_key(tenant)))
    third.version = int(await redis.incr(contract.config_version_key(tenant)))
    await redis.set(contract.config_key(tenant), third.to_json())
    await wait_for(lambda: reloaded_to(third.version), within=4, what="the polled reload")

    assert process.poll() is None
    assert await _ready_pid(redis, tenant) == process.pid
    log = procs.runtime_log(tenant)
    assert '"via": "pubsub"' in log and '"via": "poll"' in log
    assert all('"tenant_id": "' + tenant + '"' in line for line in log.strip().splitlines())
    rss = _vm_rss(process.pid)
    print(f"\npub/sub reload in {pubsub_latency * 1000:.0f} ms; bare runtime VmRSS {rss / 1048576:.1f} MiB")
    assert rss < 60 * 1048576


async def test_runtime_exits_when_its_lease_is_taken(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    await _lease(redis, tenant, token=5)
    process = procs.start_runtime(tenant, token=5)
    await wait_for(lambda: _ready_pid(redis, tenant), within=10, what="ready")

    await redis.set(contract.lease_key(tenant), "otherhost:6")  # another host won the tenant (newer token)
    code = await _wait_exit(process, within=4)
    assert code == contract.EXIT_LEASE_LOST
    assert await redis.exists(contract.ready_key(tenant)) == 0
    await queue_echo(redis, tenant, "late")
    await asyncio.sleep(0.3)
    assert await outbox(redis, tenant) == []

    # A runtime whose token is stale from the start refuses to serve at all.
    stale = procs.start_runtime(tenant, token=5, name="stale")
    assert await _wait_exit(stale, within=10) == contract.EXIT_LEASE_LOST
    assert await outbox(redis, tenant) == []


async def test_idle_runtime_exits_cleanly_with_the_idle_marker(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    await _lease(redis, tenant)
    await queue_echo(redis, tenant, "e1")
    process = procs.start_runtime(tenant, RUNTIME_IDLE_SECONDS="1")
    code = await _wait_exit(process, within=10)
    assert code == contract.EXIT_IDLE
    assert await redis.exists(contract.idle_key(tenant)) == 1
    assert await redis.exists(contract.ready_key(tenant)) == 0
    assert [reply["event_id"] for reply in await outbox(redis, tenant)] == ["e1"]
    assert '"event": "runtime.idle"' in procs.runtime_log(tenant)


async def test_failing_handler_is_dead_lettered_with_an_error_event(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    await _lease(redis, tenant)
    await queue_echo(redis, tenant, "bad", fail=True)
    await queue_echo(redis, tenant, "good")
    procs.start_runtime(tenant)

    async def dead() -> list:
        return await redis.xrange(contract.dead_letter_stream(tenant))

    entries = await wait_for(dead, within=10, what="the dead letter")
    assert "handler failed" in entries[0][1]["reason"]
    await wait_for(lambda: outbox(redis, tenant), within=5, what="the good answer")
    events = [contract.RuntimeEvent.from_fields(fields) for _id, fields in await redis.xrange(contract.events_stream())]
    assert any(event.tenant_id == tenant and event.type == "runtime.error" for event in events)
    pending = await redis.xpending(contract.inbound_stream(tenant), contract.RUNTIME_GROUP)
    assert int(pending["pending"]) == 0


async def test_count_message_enforces_the_daily_limit(redis: Redis) -> None:
    tenant = "t" + os.urandom(4).hex()
    runtime = Runtime(RuntimeSettings(tenant_id=tenant, redis_url=os.environ["REDIS_URL"]), redis=redis)
    runtime.activate()
    from bot_runtime.runtime import count_message, should_send_limit_notice

    limited = contract.TenantConfig(tenant_id=tenant, version=1, plan=contract.PlanLimits(messages_per_day=2))
    assert [await count_message(limited) for _ in range(3)] == [True, True, False]
    unlimited = contract.TenantConfig(tenant_id=tenant, version=1, plan=contract.PlanLimits(messages_per_day=None))
    assert await count_message(unlimited)
    keys = [key async for key in redis.scan_iter(match=contract.usage_key(tenant, "*"))]
    assert len(keys) == 1 and 0 < await redis.ttl(keys[0]) <= 2 * 86400
    assert await should_send_limit_notice(limited, "chat-1")
    assert not await should_send_limit_notice(limited, "chat-1")
    assert await should_send_limit_notice(limited, "chat-2")


def test_credentials_round_trip_and_key_rotation() -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = encrypt_json({"token": "123:ABC"}, key=old)
    assert "123:ABC" not in token
    assert decrypt_json(token, key=f"{new},{old}") == {"token": "123:ABC"}
    assert decrypt_json("", key=new) == {}
    with pytest.raises(SecretKeyError):
        decrypt_json(token, key=new)
