"""Feeding SSE connections from the visitors' conversation streams with one blocking XREAD per process.

A web worker may hold thousands of idle widget connections. Each blocking on its own XREAD would take a Redis
connection apiece, so every event loop gets one :class:`ReplyHub`: a single task that blocks on XREAD over all the
streams its subscribers watch (plus a private wake-up stream, written when a new subscriber arrives so the blocked
call starts over with the new key) and hands each entry to the subscribers' queues. The task runs only while
somebody is subscribed. Redis stays the source of truth: a subscriber that falls behind is dropped and its browser
reconnects with Last-Event-ID, and an SSE connection first replays the stream from its resume point itself (see
``endpoints.stream``), so entries written before the hub saw the key are never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from control_plane.kit.redis import get_redis, key
from control_plane.settings import get_settings

log = logging.getLogger("botfactory.widget")

Entry = tuple[str, dict[Any, Any]]

# How long one XREAD blocks; also how late the hub notices that its last subscriber left.
BLOCK_MS = 10_000
# Entries a subscriber may have waiting; a connection that falls further behind is closed and resumes.
QUEUE_SIZE = 500


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_id(value: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair (``"1700000000000-3"`` → ``(1700000000000, 3)``)."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Subscription:
    stream: str
    queue: asyncio.Queue[Entry] = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE))
    overflowed: bool = False


class ReplyHub:
    """One event loop's reader of the conversation streams its SSE connections watch."""

    def __init__(self, redis_url: str, *, block_ms: int = BLOCK_MS) -> None:
        self.redis_url = redis_url
        self.block_ms = block_ms
        self.wake_key = key("widget", "hub", uuid.uuid4().hex)
        self._subs: dict[str, set[Subscription]] = {}
        self._cursors: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def watching(self) -> int:
        return len(self._subs)

    async def subscribe(self, stream: str) -> Subscription:
        """Start receiving entries added to ``stream`` from now on (the caller replays older ones itself)."""
        sub = Subscription(stream)
        if stream not in self._cursors:
            latest = await get_redis().xrevrange(stream, count=1)
            # Another subscriber may have started watching while we asked; its cursor is at least as recent.
            self._cursors.setdefault(stream, _text(latest[0][0]) if latest else "0-0")
        self._subs.setdefault(stream, set()).add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="widget-reply-hub")
        else:
            await self._nudge()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.stream)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.stream]
            self._cursors.pop(sub.stream, None)

    async def _nudge(self) -> None:
        # Ends the running XREAD at once, so the next one includes the new stream.
        async with get_redis().pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"n": "1"}, maxlen=10, approximate=False)
            pipe.expire(self.wake_key, 60)
            await pipe.execute()

    async def _run(self) -> None:
        settings = get_settings()
        redis = Redis.from_url(
            self.redis_url,
            decode_responses=False,
            socket_timeout=self.block_ms / 1000 + settings.redis_socket_timeout_seconds,
            health_check_interval=30,
        )
        wake_cursor = "0-0"
        try:
            while True:
                if not self._subs:
                    # No await between this check and forgetting the task: a later subscribe starts a new one.
                    self._task = None
                    return
                streams = {name: self._cursors[name] for name in self._subs}
                streams[self.wake_key] = wake_cursor
                try:
                    response = await redis.xread(streams, block=self.block_ms, count=100)  # type: ignore[arg-type]
                except (RedisError, OSError) as exc:
                    log.warning("widget.hub.read_error", extra={"error": repr(exc)})
                    await asyncio.sleep(1)
                    continue
                items = response.items() if isinstance(response, dict) else (response or [])
                for raw_name, entries in items:
                    name = _text(raw_name)
                    for raw_id, fields in entries:
                        entry_id = _text(raw_id)
                        if name == self.wake_key:
                            wake_cursor = entry_id
                            continue
                        if name not in self._cursors:
                            break  # everybody watching it left while we were blocked
                        self._cursors[name] = entry_id
                        self._deliver(name, (entry_id, fields))
        finally:
            with contextlib.suppress(Exception):
                await redis.aclose()

    def _deliver(self, stream: str, entry: Entry) -> None:
        for sub in list(self._subs.get(stream, ())):
            try:
                sub.queue.put_nowait(entry)
            except asyncio.QueueFull:
                sub.overflowed = True
                self.unsubscribe(sub)
                # Wake the consumer so it sees the overflow and closes; its browser resumes from Last-Event-ID.
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()
                sub.queue.put_nowait(entry)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReplyHub] = weakref.WeakKeyDictionary()


def reply_hub() -> ReplyHub:
    """The running event loop's hub (an app served by several loops, as in tests, gets one per loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = ReplyHub(get_settings().redis_url)
    return hub
