"""Redis stream primitives for the runtime's inbound path: consumer group, reads, claims, and the final commit.

An inbound entry is acknowledged only in ``commit``: one MULTI that writes the ``sent`` marker, appends the
entry's RuntimeEvents to the events stream and XACKs, so the events of an answered message are never lost
between the send and the ack. Entries a dead consumer left pending are taken over with XAUTOCLAIM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot_runtime import contract
from bot_runtime.resp import Redis, redis_errors

Entry = tuple[str, dict[str, str]]

# The events stream is trimmed approximately (cheap) well above what the consumer falls behind by in practice.
DEFAULT_EVENTS_MAXLEN = 500_000

# Count an inbound entry once however often it is handled (handler retries, redelivery after a crash): the daily
# usage counter and the per-chat rate windows. KEYS: counter, per-event marker. ARGV: counter TTL, marker TTL.
# Returns the event's count: INCRed the first time, read back from the marker after that, in one atomic step.
COUNT_ONCE = """
local counted = redis.call('GET', KEYS[2])
if counted then return tonumber(counted) end
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
redis.call('SET', KEYS[2], count, 'EX', ARGV[2])
return count
"""


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group at id 0 (so entries queued before the first runtime ever started are read)."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except redis_errors("ResponseError") as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _entries(raw: Iterable[Any]) -> list[Entry]:
    # A pending entry whose stream item was trimmed comes back with no fields; the caller acks it away.
    return [(str(entry_id), dict(fields or {})) for entry_id, fields in raw]


async def read_new(redis: Redis, stream: str, group: str, consumer: str, *, count: int, block_ms: int) -> list[Entry]:
    """Entries never delivered to anyone (``>``), waiting up to ``block_ms`` (None = don't block)."""
    response = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    if not response:
        return []
    # RESP2 gives [[stream, entries]], RESP3 a dict.
    items = response.items() if isinstance(response, dict) else response
    entries: list[Entry] = []
    for _stream, raw in items:
        entries.extend(_entries(raw))
    return entries


async def claim_stale(
    redis: Redis, stream: str, group: str, consumer: str, *, min_idle_ms: int, limit: int = 100
) -> list[Entry]:
    """Take over entries pending for longer than ``min_idle_ms`` under any consumer (a dead runtime's)."""
    claimed: list[Entry] = []
    cursor = "0-0"
    while len(claimed) < limit:
        response = await redis.xautoclaim(
            stream, group, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=limit - len(claimed)
        )
        cursor, raw = str(response[0]), response[1]
        claimed.extend(_entries(raw))
        if cursor == "0-0":
            break
    return claimed


async def delivery_counts(redis: Redis, stream: str, group: str, entry_ids: Sequence[str]) -> dict[str, int]:
    """How often each pending entry was delivered (XPENDING extended form), to give up on poison entries."""
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id in entry_ids:
            pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
        results = await pipe.execute()
    return {
        entry_id: int(rows[0]["times_delivered"]) for entry_id, rows in zip(entry_ids, results, strict=True) if rows
    }


async def commit(
    redis: Redis,
    stream: str,
    group: str,
    entry_id: str,
    *,
    events: Sequence[contract.RuntimeEvent] = (),
    sent_key: str | None = None,
    sent_ttl: int = 0,
    events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
) -> None:
    """Finish one inbound entry atomically: [sent marker] + events + XACK."""
    async with redis.pipeline(transaction=True) as pipe:
        if sent_key:
            pipe.set(sent_key, "1", ex=sent_ttl or None)
        for event in events:
            pipe.xadd(contract.events_stream(), event.to_fields(), maxlen=events_maxlen, approximate=True)
        pipe.xack(stream, group, entry_id)
        await pipe.execute()


async def dead_letter(
    redis: Redis,
    tenant_id: str,
    stream: str,
    group: str,
    entry_id: str,
    fields: dict[str, str],
    reason: str,
    *,
    events: Sequence[contract.RuntimeEvent] | None = None,
    events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
) -> None:
    """Move an entry to the tenant's dead-letter stream (with its events, e.g. runtime.error) and ack it: one MULTI."""
    async with redis.pipeline(transaction=True) as pipe:
        for event in events or ():
            pipe.xadd(contract.events_stream(), event.to_fields(), maxlen=events_maxlen, approximate=True)
        pipe.xadd(
            contract.dead_letter_stream(tenant_id),
            {**fields, "entry_id": entry_id, "reason": reason[:500]},
            maxlen=10_000,
            approximate=True,
        )
        pipe.xack(stream, group, entry_id)
        await pipe.execute()


async def prune_consumers(redis: Redis, stream: str, group: str, *, keep: str, min_idle_ms: int) -> int:
    """Delete consumers of dead runtimes (``host:pid`` names) that hold nothing and were idle a long time."""
    removed = 0
    try:
        consumers = await redis.xinfo_consumers(stream, group)
    except redis_errors("ResponseError"):
        return 0
    for consumer in consumers:
        name = str(consumer["name"])
        if name != keep and int(consumer["pending"]) == 0 and int(consumer["idle"]) >= min_idle_ms:
            removed += int(await redis.xgroup_delconsumer(stream, group, name))
    return removed
