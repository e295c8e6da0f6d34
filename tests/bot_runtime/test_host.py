"""Host agents with real supervisord and real Redis: start, operator commands, crash loops, idle, failover, publish.

Agents run as ``botfactory runtime-host`` subprocesses with short timings (RUNTIME_LEASE_TTL=3, a 0.5 s tick);
the ``procs`` fixture stops them, their supervisords and any runtime they left, even when a test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from bot_runtime import contract
from bot_runtime.crypto import decrypt_json
from control_plane.runtimes import operations
from control_plane.runtimes.publish import (
    publish_after_commit,
    publish_tenant_config,
    sync_all,
    wait_for_background_publishes,
    wake_tenant,
)
from tests.bot_runtime.conftest import (
    ROOT,
    HostProcess,
    Processes,
    outbox,
    pid_alive,
    publish,
    queue_echo,
    runtime_pids,
    wait_for,
)

MIB = 1048576


async def _ready(redis: Redis, tenant_id: str) -> dict[str, str]:
    """The ready hash when its pid is alive (a kill -9'd runtime leaves one behind until it expires)."""
    ready = await redis.hgetall(contract.ready_key(tenant_id))
    return ready if ready and pid_alive(int(ready["pid"])) else {}


async def _stats(redis: Redis, tenant_id: str) -> dict[str, str]:
    return await redis.hgetall(contract.runtime_stats_key(tenant_id))


async def _state_is(redis: Redis, tenant_id: str, state: str) -> dict[str, str] | None:
    stats = await _stats(redis, tenant_id)
    return stats if stats.get("state") == state else None


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


async def test_host_runs_a_tenant_and_obeys_operator_commands(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    started = time.monotonic()
    host = procs.start_host("h1")

    ready = await wait_for(lambda: _ready(redis, tenant), within=10, what="the runtime to be ready")
    first_ready = time.monotonic() - started
    pid = int(ready["pid"])
    assert ready["host"] == "h1"
    assert await redis.get(contract.lease_key(tenant)) == f"h1:{ready['token']}"
    assert host.program_file(tenant).exists()
    # The runtime knows Redis and its secret key, never the database or the control plane's secrets.
    env = _environ(pid)
    assert env["RUNTIME_SECRET_KEY"] and env["REDIS_URL"] and env["RUNTIME_LEASE_TOKEN"] == ready["token"]
    assert not {"DATABASE_URL", "ENCRYPTION_KEY", "JWT_SECRET_KEY", "ADMIN_PASSWORD"} & set(env)

    stats = await wait_for(lambda: _state_is(redis, tenant, "running"), within=5, what="stats: running")
    assert stats["host"] == "h1" and int(stats["pid"]) == pid
    assert 0 < int(stats["rss"]) < 60 * MIB

    rows = {row.tenant_id: row for row in await operations.list_runtimes(redis)}
    assert rows[tenant].state == "running" and rows[tenant].leased_by == "h1" and rows[tenant].desired

    reply = await operations.log_tail(redis, tenant, lines=50)
    assert reply is not None and reply.host_id == "h1"
    assert any('"event": "runtime.ready"' in line for line in reply.lines)

    ok, message = await operations.restart_runtime(redis, tenant)
    assert ok, message

    async def restarted() -> dict[str, str]:
        ready = await _ready(redis, tenant)
        return ready if ready and int(ready["pid"]) != pid else {}

    ready = await wait_for(restarted, within=10, what="a new runtime process")
    assert not pid_alive(pid)

    ok, message = await operations.stop_runtime(redis, tenant)
    assert ok, message
    await wait_for(lambda: _state_is(redis, tenant, "stopped"), within=10, what="stats: stopped")
    assert not host.program_file(tenant).exists()
    assert await redis.exists(contract.lease_key(tenant), contract.ready_key(tenant)) == 0
    assert not pid_alive(int(ready["pid"]))
    await asyncio.sleep(1.2)  # a couple of ticks: the hold keeps it stopped
    assert not runtime_pids({tenant})

    ok, message = await operations.start_runtime(redis, tenant)
    assert ok, message
    ready = await wait_for(lambda: _ready(redis, tenant), within=10, what="the runtime after start")

    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control_plane.cli", "runtimes", "list", "--json", cwd=ROOT, stdout=subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0
    assert any(row["tenant_id"] == tenant for row in json.loads(stdout))

    # SIGTERM: runtimes stopped, leases released, supervisord gone.
    supervisord = host.supervisord_pid
    assert supervisord and pid_alive(supervisord)
    host.process.send_signal(signal.SIGTERM)
    assert host.process.wait(10) == 0
    assert not pid_alive(supervisord)
    assert not pid_alive(int(ready["pid"]))
    assert await redis.exists(contract.lease_key(tenant), contract.host_key("h1")) == 0
    print(f"\nfirst runtime ready {first_ready:.2f} s after the agent was launched")


async def test_crash_looping_runtime_is_reported_and_retried(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    started = time.monotonic()
    host = procs.start_host("crashy", BOTFACTORY_RUNTIME_CRASH_AFTER="2", RUNTIME_CRASH_BACKOFF_SECONDS="2")

    stats = await wait_for(
        lambda: _state_is(redis, tenant, "crash-looping"), within=30, interval=0.2, what="stats: crash-looping"
    )
    elapsed = time.monotonic() - started
    assert "BOTFACTORY_RUNTIME_CRASH_AFTER" in stats["last_error"]
    assert int(stats["restarts"]) >= 4 and float(stats["next_retry_at"]) > time.time() - 1
    assert not host.program_file(tenant).exists()
    assert (await redis.get(contract.lease_key(tenant))).startswith("crashy:")  # kept: the crash does not hop hosts

    async def retried() -> bool:
        stats = await _stats(redis, tenant)
        return stats.get("state") in ("starting", "running") and int(stats["restarts"]) > 4

    await wait_for(retried, within=6, what="the retry after the backoff")
    print(f"\ncrash-looping reported {elapsed:.1f} s after the agent was launched")


async def test_idle_runtime_stops_and_the_next_message_wakes_it(redis: Redis, procs: Processes) -> None:
    tenant = procs.new_tenant()
    await publish(redis, tenant)
    host = procs.start_host("sleepy", RUNTIME_IDLE_SECONDS="2")
    ready = await wait_for(lambda: _ready(redis, tenant), within=10, what="ready")

    await wait_for(lambda: _state_is(redis, tenant, "idle"), within=10, what="stats: idle")
    assert await redis.exists(contract.idle_key(tenant)) == 1
    assert (await redis.get(contract.lease_key(tenant))).startswith("sleepy:")  # kept: the wake-up starts it here
    assert not host.program_file(tenant).exists()
    assert not pid_alive(int(ready["pid"]))
    assert await redis.sismember(contract.desired_runtimes_key(), tenant)  # desired, just idle

    started = time.monotonic()
    await queue_echo(redis, tenant, "wake-1")
    assert await wake_tenant(redis, tenant)
    await wait_for(lambda: outbox(redis, tenant), within=5, interval=0.01, what="the answer after wake-up")
    cold_start = time.monotonic() - started
    assert await redis.exists(contract.idle_key(tenant)) == 0
    assert not await wake_tenant(redis, tenant)  # running now: no second wake-up
    print(f"\ncold start (wake → answer) {cold_start * 1000:.0f} ms")
    assert cold_start < 1.5


async def test_failover_moves_tenants_to_the_living_host(redis: Redis, procs: Processes) -> None:
    tenants = sorted(procs.new_tenant() for _ in range(4))
    hosts = {name: procs.start_host(name) for name in ("ha", "hb")}

    async def both_up() -> bool:
        return all([await redis.exists(contract.host_key(name)) for name in hosts])

    await wait_for(both_up, within=10, what="both hosts")
    for tenant in tenants:
        await publish(redis, tenant)

    async def all_ready() -> list[dict[str, str]] | None:
        readies = [await _ready(redis, tenant) for tenant in tenants]
        return readies if all(readies) else None

    readies = await wait_for(all_ready, within=10, what="all tenants ready")
    by_host: dict[str, list[str]] = {}
    for tenant, ready in zip(tenants, readies, strict=True):
        by_host.setdefault(ready["host"], []).append(tenant)
    victim_name = max(by_host, key=lambda name: len(by_host[name]))
    survivor_name = next(name for name in hosts if name != victim_name)
    victim: HostProcess = hosts[victim_name]
    victim_pids = [int(ready["pid"]) for ready in readies if ready["host"] == victim_name]
    print(f"\nplacement: { {name: len(items) for name, items in by_host.items()} }")

    supervisord = victim.supervisord_pid
    assert supervisord
    killed_at = time.monotonic()
    os.kill(victim.process.pid, signal.SIGKILL)
    os.kill(supervisord, signal.SIGKILL)
    moved = by_host[victim_name][0]
    for index in range(5):  # messages arriving while nobody serves the tenant
        await queue_echo(redis, moved, f"during-{index}")

    async def all_on_survivor() -> bool:
        readies = [await _ready(redis, tenant) for tenant in tenants]
        return all(ready and ready["host"] == survivor_name for ready in readies)

    await wait_for(all_on_survivor, within=3 * 3, interval=0.1, what="every tenant on the living host")
    failover = time.monotonic() - killed_at
    for tenant in tenants:
        assert (await redis.get(contract.lease_key(tenant))).startswith(f"{survivor_name}:")

    async def orphans_gone() -> bool:
        return not any(pid_alive(pid) for pid in victim_pids)

    await wait_for(orphans_gone, within=5, what="the dead host's runtimes to exit")

    async def answered() -> bool:
        return len(await outbox(redis, moved)) == 5

    await wait_for(answered, within=5, what="the messages queued during the failover")
    print(f"failover of {len(by_host[victim_name])} tenants in {failover:.2f} s (lease TTL 3 s)")


async def test_a_host_that_joins_later_gets_its_share(redis: Redis, procs: Processes) -> None:
    tenants = sorted(procs.new_tenant() for _ in range(6))
    first = procs.start_host("hfirst", RUNTIME_HOST_REBALANCE_SECONDS="1")
    await wait_for(lambda: redis.exists(contract.host_key("hfirst")), within=10, what="the first host")
    for tenant in tenants:
        await publish(redis, tenant)

    async def placement() -> dict[str, list[str]]:
        hosts: dict[str, list[str]] = {}
        for tenant in tenants:
            ready = await _ready(redis, tenant)
            if ready:
                hosts.setdefault(ready["host"], []).append(tenant)
        return hosts

    async def all_on_first() -> bool:
        return len((await placement()).get("hfirst", [])) == len(tenants)

    await wait_for(all_on_first, within=20, what="every tenant on the only host")
    first_pids = {tenant: int((await _ready(redis, tenant))["pid"]) for tenant in tenants}
    procs.start_host("hsecond", RUNTIME_HOST_REBALANCE_SECONDS="1")

    async def balanced() -> dict[str, list[str]] | None:
        hosts = await placement()
        counts = sorted(len(items) for items in hosts.values())
        return hosts if sum(counts) == len(tenants) and counts[0] >= 2 and len(counts) == 2 else None

    hosts = await wait_for(balanced, within=40, interval=0.2, what="the second host to get its share")
    print(f"\nplacement after the second host joined: { {name: len(items) for name, items in hosts.items()} }")
    # Each tenant runs once, under the lease of the host that runs it; the moved ones' old processes are gone.
    for name, items in hosts.items():
        for tenant in items:
            assert (await redis.get(contract.lease_key(tenant))).startswith(f"{name}:")
    moved = hosts["hsecond"]
    assert not any(pid_alive(first_pids[tenant]) for tenant in moved)
    assert len(runtime_pids(set(tenants))) == len(tenants)
    # Moved tenants answer from their new host.
    for tenant in moved:
        await queue_echo(redis, tenant, f"after-move-{tenant}")

    async def answered() -> bool:
        return all([len(await outbox(redis, tenant)) == 1 for tenant in moved])

    await wait_for(answered, within=10, what="the moved tenants to answer")
    assert first.process.poll() is None


async def test_publish_tenant_config_from_the_database(redis: Redis) -> None:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.kit.security import encrypt
    from control_plane.models import Bot, ChannelConnection, Tenant

    token = "123456:SECRET-token-never-in-redis"
    async with get_sessionmaker()() as db:
        tenant = Tenant(name="Shop", trial_ends_at=datetime.now(UTC) + timedelta(days=3))
        db.add(tenant)
        await db.flush()
        enabled = Bot(tenant_id=tenant.id, name="Helper", language="ru", welcome_message="Salom")
        disabled = Bot(tenant_id=tenant.id, name="Old", is_enabled=False)
        db.add_all([enabled, disabled])
        await db.flush()
        db.add(
            ChannelConnection(
                tenant_id=tenant.id,
                bot_id=enabled.id,
                kind="telegram",
                credentials_encrypted=encrypt(json.dumps({"token": token})),
                credential_fingerprint="f" * 64,
                settings={"mode": "polling", "username": "shop_bot"},
            )
        )
        await db.commit()
        tenant_id = str(tenant.id)

        pubsub = redis.pubsub()
        await pubsub.subscribe(contract.config_channel(tenant_id))
        first = await publish_tenant_config(db, tenant.id, redis=redis)
        assert first is not None and first.version == 1 and first.status == "active"
        stored = contract.TenantConfig.from_json(await redis.get(contract.config_key(tenant_id)))
        assert stored == first
        assert await redis.sismember(contract.desired_runtimes_key(), tenant_id)
        helper = stored.bot(str(enabled.id))
        assert helper is not None and helper.welcome_message == "Salom"
        telegram = next(channel for channel in helper.channels if channel.kind == "telegram")
        assert decrypt_json(telegram.credentials) == {"token": token}
        assert telegram.settings["mode"] == "polling"
        assert {channel.kind for channel in helper.channels} == {"telegram", "widget"}

        async def notice() -> str | None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            return message["data"] if message else None

        assert await wait_for(notice, within=3, what="the pub/sub notice") == f"{tenant_id}:1"
        await pubsub.aclose()

        # No plaintext token anywhere in this session's keyspace.
        prefix = contract.prefix()
        async for key in redis.scan_iter(match=prefix + "*"):
            if await redis.type(key) == "string":
                assert token not in (await redis.get(key) or "")

        enabled.is_enabled = False
        await db.commit()
        second = await publish_tenant_config(db, tenant.id, redis=redis)
        assert second is not None and second.version == 2
        assert not await redis.sismember(contract.desired_runtimes_key(), tenant_id)

        enabled.is_enabled = True
        tenant.trial_ends_at = datetime.now(UTC) - timedelta(days=1)  # trial over, never paid: lapsed
        await db.commit()
        third = await publish_tenant_config(db, tenant.id, redis=redis)
        assert third is not None and third.status == "lapsed"
        assert not await redis.sismember(contract.desired_runtimes_key(), tenant_id)

        tenant.trial_ends_at = None
        await db.commit()
        assert (await publish_tenant_config(db, tenant.id, redis=redis)).status == "active"  # type: ignore[union-attr]
        assert await redis.sismember(contract.desired_runtimes_key(), tenant_id)
        tenant.status = "suspended"
        await db.commit()
        assert (await publish_tenant_config(db, tenant.id, redis=redis)).status == "suspended"  # type: ignore[union-attr]
        assert not await redis.sismember(contract.desired_runtimes_key(), tenant_id)

        assert await publish_tenant_config(db, uuid.uuid4(), redis=redis) is None

        # After-commit publishing (what bot changes call), and a full sync that drops stale desired entries.
        tenant.status = "active"
        publish_after_commit(db, tenant.id)
        await db.commit()
        await wait_for_background_publishes()
        assert await redis.sismember(contract.desired_runtimes_key(), tenant_id)
        await redis.sadd(contract.desired_runtimes_key(), "gone-tenant")
        result = await sync_all(db, redis=redis)
        assert result["published"] == result["tenants"] >= 1 and result["removed"] == 1
        assert not await redis.sismember(contract.desired_runtimes_key(), "gone-tenant")
