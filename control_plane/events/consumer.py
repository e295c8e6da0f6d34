"""The events consumer: read the runtimes' events stream with a consumer group, ingest, commit, then ack.

Per batch (XREADGROUP COUNT 200 BLOCK 2000): one transaction ingests every entry (``service.ingest``), then one
MULTI acks them all and dead-letters the poison ones. Nothing is acked before its commit, so a crash between the
two replays the batch, which ingestion makes a no-op. Entries another consumer left pending for longer than
EVENTS_CLAIM_IDLE_MS are taken over (XAUTOCLAIM) at start and every EVENTS_CLAIM_EVERY_SECONDS; an entry delivered
more than EVENTS_MAX_DELIVERIES times (consumers kept dying on it) is dead-lettered unprocessed.

Failures: PostgreSQL or Redis being unavailable (or a deadlock) retries the same batch with backoff, forever: the
stream holds the data meanwhile. Any other error ingests the batch entry by entry, so one bad entry cannot hold
back the rest; an entry failing EVENTS_ENTRY_ATTEMPTS times on its own is dead-lettered. Dead letters go to
``{prefix}events:dead-letter`` with the reason, for inspection and replay.

SIGTERM/SIGINT: the batch in progress gets EVENTS_STOP_GRACE_SECONDS to commit and ack; past that it is abandoned
unacked (rolled back) and another consumer claims it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot_runtime import contract, streams
from control_plane.events import service
from control_plane.events.service import Entry, IngestReport, Poison

log = logging.getLogger("control_plane.events")

# SQLSTATE classes worth retrying: connection (08), transaction rollback incl. deadlock (40), resources (53),
# operator intervention incl. shutdown and statement timeout (57), lock not available (55P03), system (58).
TRANSIENT_SQLSTATES = ("08", "40", "53", "57", "55P03", "58")


class ConsumerSettings(BaseSettings):
    """EVENTS_* environment settings of ``botfactory events-consume``."""

    model_config = SettingsConfigDict(env_prefix="EVENTS_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    batch_size: int = 200
    block_ms: int = 2000
    claim_idle_ms: int = 60_000
    claim_every_seconds: float = 30.0
    max_deliveries: int = 10
    entry_attempts: int = 3
    conversation_idle_hours: float = 12.0
    stop_grace_seconds: float = 5.0
    retry_max_seconds: float = 30.0
    progress_every_seconds: float = 60.0
    dead_letter_maxlen: int = 100_000
    prune_consumers_idle_ms: int = 3_600_000

    @property
    def idle_gap(self) -> timedelta:
        return timedelta(hours=self.conversation_idle_hours)


def dead_letter_stream() -> str:
    """Events-stream entries given up on, with ``entry_id`` and ``reason`` added to their fields."""
    return f"{contract.prefix()}events:dead-letter"


def default_consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_transient(exc: BaseException) -> bool:
    """True for failures of the infrastructure (retry the same batch) rather than of the entries."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            return True
        code = getattr(exc.orig, "sqlstate", None) or ""
        return code.startswith(TRANSIENT_SQLSTATES)
    return False


class EventsConsumer:
    """One member of the EVENTS_GROUP consumer group. ``run`` until ``stop``."""

    def __init__(
        self,
        redis: Redis,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: ConsumerSettings | None = None,
        *,
        consumer: str | None = None,
        stream: str | None = None,
    ) -> None:
        # The client must decode responses (the shared stream helpers in bot_runtime.streams expect str).
        self.redis = redis
        self.sessionmaker = sessionmaker
        self.s = settings or ConsumerSettings()
        self.stream = stream or contract.events_stream()
        self.group = contract.EVENTS_GROUP
        self.consumer = consumer or default_consumer_name()
        self.totals: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._failures: Counter[str] = Counter()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, reason: str = "") -> None:
        if not self._stop.is_set():
            log.info("events.consumer.stopping", extra={"reason": reason, "consumer": self.consumer})
        self._stop.set()

    async def run(self) -> None:
        """Consume until stopped. Redis errors while reading back off and retry; they never end the loop."""
        await self._retrying(lambda: streams.ensure_group(self.redis, self.stream, self.group), "events.group.failed")
        log.info(
            "events.consumer.started",
            extra={"consumer": self.consumer, "stream": self.stream, "batch_size": self.s.batch_size},
        )
        next_claim = 0.0
        next_progress = time.monotonic() + self.s.progress_every_seconds
        delay = 0.5
        while not self.stopping:
            try:
                entries: list[Entry] = []
                if time.monotonic() >= next_claim:
                    entries = await self.claim()
                    # A full claim may mean more is waiting: claim again next round, otherwise after the interval.
                    full = len(entries) >= self.s.batch_size
                    next_claim = 0.0 if full else time.monotonic() + self.s.claim_every_seconds
                if not entries:
                    entries = await streams.read_new(
                        self.redis,
                        self.stream,
                        self.group,
                        self.consumer,
                        count=self.s.batch_size,
                        block_ms=self.s.block_ms,
                    )
                delay = 0.5
            except ResponseError as exc:
                # NOGROUP, or UNBLOCKED when the key is deleted under a blocking read.
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                # The stream (and its group) vanished, e.g. a flushed Redis: start over from its beginning.
                log.warning("events.group.missing", extra={"stream": self.stream})
                await self._retrying(
                    lambda: streams.ensure_group(self.redis, self.stream, self.group), "events.group.failed"
                )
                continue
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("events.redis.unavailable", extra={"error": repr(exc)[:300], "retry_in": delay})
                await self._sleep(delay)
                delay = min(delay * 2, self.s.retry_max_seconds)
                continue
            if entries:
                await self._within_grace(self.process(entries))
            if time.monotonic() >= next_progress:
                self._log_progress()
                next_progress = time.monotonic() + self.s.progress_every_seconds
        self._log_progress()
        log.info("events.consumer.stopped", extra={"consumer": self.consumer})

    async def _within_grace(self, work: Awaitable[None]) -> None:
        """Run ``work``; once stopping, give it stop_grace_seconds, then cancel it (its batch stays unacked)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.s.stop_grace_seconds)
                if not done:
                    log.warning("events.batch.abandoned", extra={"reason": "stop grace elapsed"})
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    return
            await task
        finally:
            stopped.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _retrying(self, call: Callable[[], Awaitable[object]], event: str) -> None:
        delay = 0.5
        while True:
            try:
                await call()
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning(event, extra={"error": repr(exc)[:300], "retry_in": delay})
                await self._sleep(delay)
                if self.stopping:
                    return
                delay = min(delay * 2, self.s.retry_max_seconds)

    # -- claiming -------------------------------------------------------------------------------------------------

    async def claim(self) -> list[Entry]:
        """Take over entries pending too long under any consumer; dead-letter those delivered too often."""
        entries = await streams.claim_stale(
            self.redis,
            self.stream,
            self.group,
            self.consumer,
            min_idle_ms=self.s.claim_idle_ms,
            limit=self.s.batch_size,
        )
        removed = await streams.prune_consumers(
            self.redis, self.stream, self.group, keep=self.consumer, min_idle_ms=self.s.prune_consumers_idle_ms
        )
        if removed:
            log.info("events.consumers.pruned", extra={"removed": removed})
        if not entries:
            return []
        counts = await streams.delivery_counts(self.redis, self.stream, self.group, [eid for eid, _ in entries])
        worn = [(eid, fields) for eid, fields in entries if counts.get(eid, 0) > self.s.max_deliveries]
        if worn:
            poison = [Poison(eid, f"delivered {counts[eid]} times without being acked") for eid, _ in worn]
            await self._ack(worn, poison)
        log.info("events.claimed", extra={"claimed": len(entries), "dead_lettered": len(worn)})
        worn_ids = {eid for eid, _ in worn}
        return [entry for entry in entries if entry[0] not in worn_ids]

    # -- processing -----------------------------------------------------------------------------------------------

    async def process(self, entries: Sequence[Entry]) -> None:
        """Ingest and ack ``entries``, retrying infrastructure failures and isolating bad entries."""
        pending = list(entries)
        delay = 0.5
        # A batch read just before a stop is still ingested (within the grace); only retries give way to it.
        while pending:
            try:
                await self.ingest_and_ack(pending)
                return
            except Exception as exc:
                if is_transient(exc):
                    log.warning("events.batch.retry", extra={"error": repr(exc)[:300], "retry_in": delay})
                else:
                    log.exception("events.batch.failed", extra={"entries": len(pending)})
                    pending = await self._isolate(pending)
                    if not pending:
                        return
            await self._sleep(delay)
            if self.stopping:
                log.warning("events.batch.abandoned", extra={"reason": "stopping", "entries": len(pending)})
                return
            delay = min(delay * 2, self.s.retry_max_seconds)

    async def _isolate(self, entries: list[Entry]) -> list[Entry]:
        """Ingest one entry per transaction; returns the entries still to retry (a transient error stops early)."""
        keep: list[Entry] = []
        for index, entry in enumerate(entries):
            if self.stopping:
                return keep + entries[index:]
            entry_id = entry[0]
            try:
                await self.ingest_and_ack([entry])
            except Exception as exc:
                if is_transient(exc):
                    return keep + entries[index:]
                self._failures[entry_id] += 1
                if self._failures[entry_id] < self.s.entry_attempts:
                    keep.append(entry)
                    continue
                try:
                    await self._ack([entry], [Poison(entry_id, f"ingestion failed: {exc!r}"[:500])])
                except Exception as ack_exc:
                    if not is_transient(ack_exc):
                        raise
                    return keep + entries[index:]
                del self._failures[entry_id]
            else:
                self._failures.pop(entry_id, None)
        return keep

    async def ingest_and_ack(self, entries: Sequence[Entry]) -> IngestReport:
        """One transaction for the batch; the ack (and dead letters) only after it committed."""
        started = time.perf_counter()
        async with self.sessionmaker() as db, db.begin():
            report = await service.ingest(db, entries, idle_gap=self.s.idle_gap)
        await self._ack(entries, report.poison)
        self.totals.update({key: value for key, value in report.as_log().items() if value})
        log.debug(
            "events.batch.ingested",
            extra={**report.as_log(), "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return report

    async def _ack(self, entries: Sequence[Entry], poison: Sequence[Poison]) -> None:
        """XACK every entry and dead-letter the poison ones, in one MULTI."""
        if not entries:
            return
        fields_by_id = dict(entries)
        async with self.redis.pipeline(transaction=True) as pipe:
            for bad in poison:
                fields = {str(k): str(v) for k, v in (fields_by_id.get(bad.entry_id) or {}).items()}
                pipe.xadd(
                    dead_letter_stream(),
                    {**fields, "entry_id": bad.entry_id, "reason": bad.reason[:500]},
                    maxlen=self.s.dead_letter_maxlen,
                    approximate=True,
                )
            pipe.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
            await pipe.execute()
        for bad in poison:
            log.warning(
                "events.entry.poison",
                extra={
                    "entry_id": bad.entry_id,
                    "reason": bad.reason,
                    "tenant_id": bad.tenant_id,
                    "bot_id": bad.bot_id,
                },
            )

    def _log_progress(self) -> None:
        if self.totals:
            log.info("events.consumer.progress", extra=dict(self.totals))
            self.totals.clear()


async def serve(settings: ConsumerSettings | None = None) -> int:
    """Run one consumer in this process until SIGTERM/SIGINT (``botfactory events-consume``)."""
    from control_plane.kit.db import dispose_engine, get_sessionmaker
    from control_plane.settings import get_settings

    app_settings = get_settings()
    if not app_settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (make run sets it to the embedded Valkey)")
    consumer_settings = settings or ConsumerSettings()
    redis = Redis.from_url(
        app_settings.redis_url,
        decode_responses=True,
        # A blocking read waits block_ms on the server: the socket must wait longer than that.
        socket_timeout=consumer_settings.block_ms / 1000 + app_settings.redis_socket_timeout_seconds,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    consumer = EventsConsumer(redis, get_sessionmaker(), consumer_settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop, f"signal {sig.name}")
    try:
        await consumer.run()
    finally:
        await redis.aclose()
        await dispose_engine()
    return 0
