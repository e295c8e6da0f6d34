"""Tenant leases with fencing tokens: at most one host runs a tenant, and a runtime can tell it still owns it.

A lease is ``lease_key(tenant)`` = ``"{host_id}:{token}"`` with a TTL (RUNTIME_LEASE_TTL). The token comes from
INCR on ``fencing_counter_key(tenant)``, so every acquisition gets a larger one: a runtime started under token 7
stops the moment the lease reads anything but ``host:7``, even if its own host re-acquires the tenant later.
All writes are Lua scripts so "check then write" is one atomic step on the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot_runtime import contract
from bot_runtime.resp import Redis

# KEYS: lease, fencing counter. ARGV: host_id, ttl_ms. Returns the new token, or nil when someone holds the lease.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
"""

# KEYS: lease. ARGV: expected value, ttl_ms. 1 when renewed, 0 when the lease is someone else's or gone.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lease. ARGV: expected value. 1 when deleted.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    tenant_id: str
    host_id: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.host_id}:{self.token}"


def parse(value: bytes | str | None) -> tuple[str, int] | None:
    """``"host:12"`` → ("host", 12); None for a missing or malformed value."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    host, sep, token = text.rpartition(":")
    if not sep or not token.isdigit():
        return None
    return host, int(token)


async def acquire(redis: Redis, tenant_id: str, host_id: str, ttl_ms: int) -> Lease | None:
    token = await redis.eval(
        _ACQUIRE, 2, contract.lease_key(tenant_id), contract.fencing_counter_key(tenant_id), host_id, ttl_ms
    )
    return None if token is None else Lease(tenant_id, host_id, int(token))


async def renew(redis: Redis, lease: Lease, ttl_ms: int) -> bool:
    return bool(await redis.eval(_RENEW, 1, contract.lease_key(lease.tenant_id), lease.value, ttl_ms))


async def renew_many(redis: Redis, leases: list[Lease], ttl_ms: int) -> list[bool]:
    """Renew a host's leases in one round trip; the result is aligned with ``leases``."""
    if not leases:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for lease in leases:
            pipe.eval(_RENEW, 1, contract.lease_key(lease.tenant_id), lease.value, ttl_ms)
        return [bool(result) for result in await pipe.execute()]


async def release(redis: Redis, lease: Lease) -> bool:
    return bool(await redis.eval(_RELEASE, 1, contract.lease_key(lease.tenant_id), lease.value))


async def holder(redis: Redis, tenant_id: str) -> tuple[str, int] | None:
    """(host_id, token) of the current lease, or None."""
    return parse(await redis.get(contract.lease_key(tenant_id)))
