"""Operator operations on runtimes, reading and writing only Redis: list, start, stop, restart, log tail, hosts.

The CLI (``botfactory runtimes ...``) and the operator console share these. Intent is durable: ``stop`` sets the
tenant's hold marker (no host starts it while held) and ``start`` clears it, so a command survives a host dying;
the command sent to the leasing host over ``control_stream(host)`` only makes it happen at once, and its answer
comes back on ``control_reply_key``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bot_runtime import contract
from bot_runtime import lease as leases
from control_plane.runtimes.publish import sync_key_prefix, wake_tenant

COMMANDS = ("start", "stop", "restart")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class RuntimeRow:
    """One line of the operator's runtime list."""

    tenant_id: str
    state: str
    host: str
    pid: int
    uptime: float
    restarts: int
    rss: int  # bytes
    last_error: str
    desired: bool
    idle: bool
    held: bool
    leased_by: str
    updated_at: float
    reason: str = ""  # why it last stopped: operator stop, no traffic, lease lost ...
    next_retry_at: float = 0.0  # crash-looping: when its host tries again (epoch s)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class HostRow:
    """One live runtime host, from its heartbeat hash (gone within RUNTIME_LEASE_TTL of the host dying)."""

    host_id: str
    pid: int
    supervisord_pid: int
    runtimes: int  # tenants the host holds the lease of
    started_at: float
    updated_at: float  # last heartbeat

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


async def list_runtimes(redis: Redis) -> list[RuntimeRow]:
    """Every tenant that should run or has run: stats from the hosts, plus desired / idle / held / lease."""
    sync_key_prefix()
    desired = {_text(member) for member in await redis.smembers(contract.desired_runtimes_key())}
    known = {_text(member) for member in await redis.smembers(contract.runtimes_known_key())}
    return await _read_rows(redis, sorted(desired | known), desired)


async def get_runtime(redis: Redis, tenant_id: str) -> RuntimeRow | None:
    """One tenant's row of ``list_runtimes``; None when no host ever ran it and it is not desired."""
    sync_key_prefix()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.sismember(contract.desired_runtimes_key(), tenant_id)
        pipe.sismember(contract.runtimes_known_key(), tenant_id)
        desired, known = await pipe.execute()
    if not desired and not known:
        return None
    rows = await _read_rows(redis, [tenant_id], {tenant_id} if desired else set())
    return rows[0]


async def _read_rows(redis: Redis, tenants: list[str], desired: set[str]) -> list[RuntimeRow]:
    async with redis.pipeline(transaction=False) as pipe:
        for tenant_id in tenants:
            pipe.hgetall(contract.runtime_stats_key(tenant_id))
            pipe.exists(contract.idle_key(tenant_id))
            pipe.exists(contract.hold_key(tenant_id))
            pipe.get(contract.lease_key(tenant_id))
        flat = await pipe.execute()
    rows = []
    for index, tenant_id in enumerate(tenants):
        raw_stats, idle, held, lease_value = flat[4 * index : 4 * index + 4]
        stats = {_text(key): _text(value) for key, value in (raw_stats or {}).items()}
        holder = leases.parse(lease_value)
        state = stats.get("state", "")
        if not state:
            state = "idle" if idle else ("stopped" if held or tenant_id not in desired else "pending")
        rows.append(
            RuntimeRow(
                tenant_id=tenant_id,
                state=state,
                host=stats.get("host", ""),
                pid=int(stats.get("pid") or 0),
                uptime=float(stats.get("uptime") or 0),
                restarts=int(stats.get("restarts") or 0),
                rss=int(stats.get("rss") or 0),
                last_error=stats.get("last_error", ""),
                desired=tenant_id in desired,
                idle=bool(idle),
                held=bool(held),
                leased_by=holder[0] if holder else "",
                updated_at=float(stats.get("updated_at") or 0),
                reason=stats.get("reason", ""),
                next_retry_at=float(stats.get("next_retry_at") or 0),
            )
        )
    return rows


async def list_hosts(redis: Redis) -> list[HostRow]:
    """The hosts whose heartbeat is current; a dead host's hash has expired (its set entry may linger a tick)."""
    sync_key_prefix()
    host_ids = sorted(_text(member) for member in await redis.smembers(contract.hosts_key()))
    async with redis.pipeline(transaction=False) as pipe:
        for host_id in host_ids:
            pipe.hgetall(contract.host_key(host_id))
        beats = await pipe.execute()
    hosts = []
    for host_id, raw in zip(host_ids, beats, strict=True):
        beat = {_text(key): _text(value) for key, value in (raw or {}).items()}
        if not beat:
            continue
        hosts.append(
            HostRow(
                host_id=host_id,
                pid=int(beat.get("pid") or 0),
                supervisord_pid=int(beat.get("supervisord_pid") or 0),
                runtimes=int(beat.get("runtimes") or 0),
                started_at=float(beat.get("started_at") or 0),
                updated_at=float(beat.get("updated_at") or 0),
            )
        )
    return hosts


async def send_host_command(
    redis: Redis, host_id: str, command: str, tenant_id: str, *, wait_seconds: float = 5.0
) -> tuple[bool, str]:
    """XADD a command to one host and wait for its answer."""
    request_id = secrets.token_hex(8)
    entry = contract.HostCommand(command=command, tenant_id=tenant_id, request_id=request_id, at=time.time())
    await redis.xadd(contract.control_stream(host_id), entry.to_fields(), maxlen=1000, approximate=True)
    reply = await redis.blpop([contract.control_reply_key(request_id)], timeout=wait_seconds)
    if reply is None:
        return False, f"host {host_id} did not answer within {wait_seconds:g} s"
    answer = json.loads(_text(reply[1]))
    return bool(answer.get("ok")), f"{answer.get('message', '')} (host {answer.get('host_id', host_id)})"


async def _wait_for_lease(redis: Redis, tenant_id: str, wait_seconds: float) -> str | None:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        holder = await leases.holder(redis, tenant_id)
        if holder:
            return holder[0]
        await asyncio.sleep(0.1)
    return None


async def start_runtime(redis: Redis, tenant_id: str, *, wait_seconds: float = 5.0) -> tuple[bool, str]:
    """Clear an operator hold (and an idle marker) and get the runtime running on some host."""
    sync_key_prefix()
    await redis.delete(contract.hold_key(tenant_id))
    holder = await leases.holder(redis, tenant_id)
    if holder:
        # The holder resets a crash-loop backoff on "start".
        return await send_host_command(redis, holder[0], "start", tenant_id, wait_seconds=wait_seconds)
    if not await redis.sismember(contract.desired_runtimes_key(), tenant_id):
        return False, "tenant is not active (suspended, lapsed, or no enabled bot)"
    await wake_tenant(redis, tenant_id)
    host = await _wait_for_lease(redis, tenant_id, wait_seconds)
    return (True, f"started on host {host}") if host else (False, f"no host took it within {wait_seconds:g} s")


async def stop_runtime(redis: Redis, tenant_id: str, *, wait_seconds: float = 5.0) -> tuple[bool, str]:
    """Hold the tenant (no host starts it until ``start``) and stop it where it runs."""
    sync_key_prefix()
    await redis.set(contract.hold_key(tenant_id), f"{time.time():.3f}")
    holder = await leases.holder(redis, tenant_id)
    if not holder:
        return True, "held; it was not running"
    return await send_host_command(redis, holder[0], "stop", tenant_id, wait_seconds=wait_seconds)


async def restart_runtime(redis: Redis, tenant_id: str, *, wait_seconds: float = 5.0) -> tuple[bool, str]:
    """Restart where it runs (resets crash-loop backoff); an idle runtime is simply woken."""
    sync_key_prefix()
    holder = await leases.holder(redis, tenant_id)
    if holder:
        return await send_host_command(redis, holder[0], "restart", tenant_id, wait_seconds=wait_seconds)
    if await redis.exists(contract.hold_key(tenant_id)):
        return False, "held by an operator stop; use start"
    if await redis.exists(contract.idle_key(tenant_id)):
        return await start_runtime(redis, tenant_id, wait_seconds=wait_seconds)
    return False, "not running on any host"


# The operator commands by name (``COMMANDS``): the CLI and the console both dispatch through this.
OPERATIONS = {"start": start_runtime, "stop": stop_runtime, "restart": restart_runtime}


async def log_tail(
    redis: Redis, tenant_id: str, *, lines: int = 100, stream: str = "stderr", wait_seconds: float = 3.0
) -> contract.LogReply | None:
    """The last log lines of a tenant's runtime, from the host that runs it (or last ran it)."""
    sync_key_prefix()
    holder = await leases.holder(redis, tenant_id)
    host = holder[0] if holder else _text(await redis.hget(contract.runtime_stats_key(tenant_id), "host"))
    if not host:
        return None
    request = contract.LogRequest(request_id=secrets.token_hex(8), tenant_id=tenant_id, lines=lines, stream=stream)
    await redis.publish(contract.log_request_channel(host), request.to_json())
    reply = await redis.blpop([contract.log_reply_key(request.request_id)], timeout=wait_seconds)
    return contract.LogReply.from_json(_text(reply[1])) if reply else None
