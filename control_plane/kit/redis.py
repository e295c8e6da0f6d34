"""The shared async Redis client, namespaced keys, and fixed-window rate limits counted atomically in Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from control_plane.settings import get_settings

_client: Redis | None = None


def get_redis() -> Redis:
    global _client
    if _client is None:
        settings = get_settings()
        if not settings.redis_url:
            raise RuntimeError("REDIS_URL is not set (make run sets it to the embedded Valkey)")
        _client = Redis.from_url(
            settings.redis_url,
            decode_responses=False,
            socket_timeout=settings.redis_socket_timeout_seconds,
            health_check_interval=30,
        )
    return _client


async def close_redis() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
    _client = None


def key(*parts: object) -> str:
    """A key under the configured prefix: ``key("rl", "login", ip)`` → ``bf:rl:login:1.2.3.4``."""
    return get_settings().redis_key_prefix + ":".join(str(part) for part in parts)


async def hit(name: str, subject: str, *, limit: int, window_seconds: int) -> tuple[bool, int]:
    """Count one hit; returns (allowed, retry_after_seconds). INCR and EXPIRE run in one transaction."""
    redis_key = key("rl", name, subject)
    async with get_redis().pipeline(transaction=True) as pipe:
        pipe.incr(redis_key)
        pipe.expire(redis_key, window_seconds, nx=True)
        pipe.ttl(redis_key)
        count, _, ttl = await pipe.execute()
    return int(count) <= limit, max(int(ttl), 1)


async def peek(name: str, subject: str) -> int:
    value = await get_redis().get(key("rl", name, subject))
    return int(value or 0)


async def reset(name: str, subject: str) -> None:
    await get_redis().delete(key("rl", name, subject))
