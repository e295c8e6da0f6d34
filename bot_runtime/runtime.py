"""The tenant runtime core: config from Redis, the inbound stream, handlers by event kind, lease and idle watch.

One process serves one tenant (``python -m bot_runtime --tenant ID``, started by the host agent under supervisord).
It knows only what its environment says (see ``RuntimeSettings.from_env``) and never imports the control plane.

Inbound path, per stream entry: dedupe on ``event_id`` (a different entry with a seen id is acked unprocessed), skip
entries whose reply is already marked sent, otherwise dispatch to the handler registered for the entry's kind. A
handler sends through ``ctx.deliver`` (lease check, send, ``sent`` marker) and reports with ``ctx.emit``; the core
then commits the entry: sent marker + events + XACK in one MULTI. Nothing is acked before its reply is recorded,
so a kill -9 loses nothing and repeats at most the reply that was in flight.

Channels plug in without this module knowing them: a handler module registers itself on import
(``register_handler``); modules are imported lazily, by the channels a tenant's config names and by the kinds that
show up in the stream, so a widget-only tenant never imports python-telegram-bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from bot_runtime import contract, streams
from bot_runtime.contract import BotConfig, InboundEvent, RuntimeEvent, TenantConfig
from bot_runtime.resp import PubSub, Redis, redis_errors

T = TypeVar("T")

log = logging.getLogger("bot_runtime")

DAY_SECONDS = 24 * 3600

# Kinds whose module does not follow the naming convention (see ``_candidate_modules``).
HANDLER_MODULES: dict[str, str] = {
    "test.echo": "bot_runtime.handlers.echo",
}


class LeaseLost(Exception):
    """The tenant's lease is gone or belongs to another fencing token: stop before sending anything."""


# ---------------------------------------------------------------------------------------------------------------
# Registries (module level: one runtime per process)

Handler = Callable[["HandlerContext"], Awaitable[None]]
OrderKey = Callable[[InboundEvent], str]
ConfigListener = Callable[["Runtime", TenantConfig], Awaitable[None]]
ShutdownHook = Callable[["Runtime"], Awaitable[None]]
IdleHook = Callable[["Runtime"], Awaitable[None]]
IdleVeto = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Registration:
    handler: Handler
    order_key: OrderKey


def _by_bot(event: InboundEvent) -> str:
    return event.bot_id


_handlers: dict[str, Registration] = {}
_config_listeners: list[ConfigListener] = []
_shutdown_hooks: list[ShutdownHook] = []
_idle_hooks: list[IdleHook] = []
_idle_vetoes: list[IdleVeto] = []


def register_handler(kind: str, handler: Handler, *, order_key: OrderKey | None = None) -> None:
    """Route inbound entries of ``kind`` to ``handler``.

    Entries with the same order key are handled one at a time, in stream order; different keys run concurrently
    (up to RUNTIME_CONCURRENCY). The default key is the bot id, which is always safe; a channel that knows its chat
    id can pass ``order_key=lambda e: f"{e.bot_id}:{chat}"`` to answer different chats in parallel.
    """
    _handlers[kind] = Registration(handler, order_key or _by_bot)


def register_config_listener(listener: ConfigListener) -> None:
    """Call ``listener(runtime, config)`` now (if running) and after every config reload (e.g. start pollers)."""
    _config_listeners.append(listener)


def register_shutdown(hook: ShutdownHook) -> None:
    """Call ``hook(runtime)`` when the runtime stops (close HTTP clients, stop pollers)."""
    _shutdown_hooks.append(hook)


def register_idle_veto(veto: IdleVeto) -> None:
    """While ``veto()`` returns True the runtime does not exit for idleness."""
    _idle_vetoes.append(veto)


def register_idle_hook(hook: IdleHook) -> None:
    """Call ``hook(runtime)`` when the runtime is about to exit for idleness, after the idle marker is set and before
    its last look at the stream: stop whatever queues entries without waking the runtime (e.g. Telegram pollers),
    so what it queued is seen by that look. If the look finds entries the runtime carries on, and the config
    listeners run again to restart what the hook stopped."""
    _idle_hooks.append(hook)


def _candidate_modules(kind: str) -> list[str]:
    if kind in HANDLER_MODULES:
        return [HANDLER_MODULES[kind]]
    family = kind.split(".", 1)[0]
    return [f"bot_runtime.channels.{family}", f"bot_runtime.handlers.{family}"]


def import_optional(module_name: str) -> bool:
    """Import a plugin module; False when it does not exist (a missing dependency inside it still raises)."""
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return False
        raise
    return True


def handler_for(kind: str) -> Registration | None:
    """The registration for ``kind``, importing the module that provides it on first use."""
    if kind not in _handlers:
        for module_name in _candidate_modules(kind):
            if import_optional(module_name) and kind in _handlers:
                break
    return _handlers.get(kind)


# ---------------------------------------------------------------------------------------------------------------
# Settings and logging


def _env_float(environ: dict[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    return float(raw) if raw else default


@dataclass(slots=True)
class RuntimeSettings:
    """Everything a runtime knows, all from its environment (the host agent sets it)."""

    tenant_id: str
    redis_url: str
    host_id: str = "local"
    lease_token: int | None = None  # None: run unleased (a developer starting a runtime by hand)
    lease_ttl: float = 15.0
    idle_seconds: float = 900.0  # 0 = never idle
    config_poll_seconds: float = 5.0
    claim_idle_ms: int = 5000
    claim_every_seconds: float = 2.5
    concurrency: int = 4
    max_inflight: int = 64
    handler_timeout: float = 120.0
    handler_attempts: int = 3
    max_deliveries: int = 5
    dedupe_ttl: int = 2 * DAY_SECONDS
    sent_ttl: int = 2 * DAY_SECONDS
    events_maxlen: int = streams.DEFAULT_EVENTS_MAXLEN
    shutdown_grace: float = 3.0
    plugins: list[str] = field(default_factory=list)
    crash_after: float | None = None  # fault injection, see __main__

    @property
    def lease_check_seconds(self) -> float:
        return max(0.2, min(2.0, self.lease_ttl / 3))

    @property
    def consumer(self) -> str:
        return f"{self.host_id}:{os.getpid()}"

    @classmethod
    def from_env(cls, tenant_id: str, environ: dict[str, str] | None = None) -> RuntimeSettings:
        env = dict(os.environ if environ is None else environ)
        token = env.get("RUNTIME_LEASE_TOKEN", "").strip()
        crash_after = env.get("BOTFACTORY_RUNTIME_CRASH_AFTER", "").strip()
        return cls(
            tenant_id=tenant_id,
            redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            host_id=env.get("RUNTIME_HOST_ID", "local"),
            lease_token=int(token) if token else None,
            lease_ttl=_env_float(env, "RUNTIME_LEASE_TTL", 15.0),
            idle_seconds=_env_float(env, "RUNTIME_IDLE_SECONDS", 900.0),
            config_poll_seconds=_env_float(env, "RUNTIME_CONFIG_POLL_SECONDS", 5.0),
            claim_idle_ms=int(_env_float(env, "RUNTIME_CLAIM_IDLE_MS", 5000)),
            claim_every_seconds=_env_float(env, "RUNTIME_CLAIM_EVERY_SECONDS", 2.5),
            concurrency=int(_env_float(env, "RUNTIME_CONCURRENCY", 4)),
            handler_timeout=_env_float(env, "RUNTIME_HANDLER_TIMEOUT", 120.0),
            plugins=[name.strip() for name in env.get("RUNTIME_PLUGINS", "").split(",") if name.strip()],
            crash_after=float(crash_after) if crash_after else None,
        )


_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the tenant id, host and pid on every line."""

    def __init__(self, tenant_id: str, host_id: str) -> None:
        super().__init__()
        self.static = {"tenant_id": tenant_id, "host_id": host_id, "pid": os.getpid()}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **self.static,
        }
        for name, value in record.__dict__.items():
            if name not in _RESERVED and not name.startswith("_"):
                payload[name] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(tenant_id: str, host_id: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(tenant_id, host_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "telegram", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now))


# ---------------------------------------------------------------------------------------------------------------
# Handler context


@dataclass(eq=False)
class HandlerContext:
    """What a handler gets for one inbound entry: the event, the tenant config, Redis, and the reply primitives."""

    runtime: Runtime
    event: InboundEvent
    entry_id: str
    redelivered: bool = False  # claimed from a dead consumer or retried: the handler may have run before
    sent: bool = False
    events: list[RuntimeEvent] = field(default_factory=list)

    @property
    def tenant_id(self) -> str:
        return self.runtime.tenant_id

    @property
    def config(self) -> TenantConfig:
        """The current config (reloads swap it between entries, never under a running handler's feet)."""
        assert self.runtime.config is not None
        return self.runtime.config

    @property
    def bot(self) -> BotConfig | None:
        return self.config.bot(self.event.bot_id)

    @property
    def redis(self) -> Redis:
        return self.runtime.redis

    async def ensure_lease(self) -> None:
        """Raise LeaseLost unless this runtime still holds the tenant; call right before any send."""
        await self.runtime.ensure_lease()

    async def mark_sent(self) -> None:
        """Record that the reply went out, right after the send: a redelivered entry is then not answered again."""
        await self.redis.set(contract.sent_key(self.tenant_id, self.event.event_id), "1", ex=self.runtime.s.sent_ttl)
        self.sent = True

    async def deliver(self, send: Callable[[], Awaitable[T]]) -> T:
        """Check the lease, send, mark sent. For a reply in several parts: ensure_lease, send all, mark_sent."""
        await self.ensure_lease()
        result = await send()
        await self.mark_sent()
        return result

    def emit(
        self,
        type: str,
        *,
        channel: str,
        chat: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> RuntimeEvent:
        """Queue a RuntimeEvent; it reaches the events stream in the same MULTI that acks the entry.

        The default event id is derived from the inbound event id and the emit order, so a redelivered entry
        emits the same ids and ingestion stays idempotent.
        """
        event = RuntimeEvent(
            event_id=event_id or f"{self.event.event_id}:{type}:{len(self.events)}",
            type=type,
            tenant_id=self.tenant_id,
            bot_id=self.event.bot_id,
            channel=channel,
            chat=chat or {},
            data=data or {},
            at=time.time(),
        )
        self.events.append(event)
        return event

    async def count_message(self) -> bool:
        """Count this entry's customer message toward the daily limit, once however often the entry is handled
        (handler retries, redelivery after a crash); False when it is over the limit."""
        return await self.runtime.count_message(self.config, event_id=self.event.event_id)


# ---------------------------------------------------------------------------------------------------------------
# The runtime

_current: Runtime | None = None


def current_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("no runtime is running in this process")
    return _current


async def count_message(tenant_cfg: TenantConfig, *, event_id: str | None = None) -> bool:
    """Count one deduplicated inbound customer message for today (UTC); False once over plan.messages_per_day.

    With ``event_id`` the message is counted once per event: a repeated call returns the first call's verdict.
    """
    return await current_runtime().count_message(tenant_cfg, event_id=event_id)


async def should_send_limit_notice(tenant_cfg: TenantConfig, chat: str) -> bool:
    """True once per chat per UTC day: the over-limit notice is sent once, then the chat gets nothing."""
    return await current_runtime().should_send_limit_notice(tenant_cfg, chat)


def counted_key(tenant_id: str, event_id: str) -> str:
    """The usage count an inbound event got when it was counted (so a retried or redelivered entry counts once)."""
    return f"{contract.prefix()}tenant:{tenant_id}:counted:{event_id}"


# KEYS: lease, dedupe marker, sent marker. ARGV: expected lease value ('' when unleased), entry id, dedupe TTL.
# The whole admission of an inbound entry in one round trip: {0} lease lost (nothing written); {1, 3} a different
# entry already carried this event id; else {1, 1 fresh | 2 our own redelivery, sent marker exists 0/1}.
_ADMIT = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local status = 1
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then
  if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {1, 3} end
  status = 2
end
return {1, status, redis.call('EXISTS', KEYS[3])}
"""

_DELETE_READY_IF_OURS = """
if redis.call('HGET', KEYS[1], 'pid') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Runtime:
    def __init__(self, settings: RuntimeSettings, redis: Redis | None = None) -> None:
        self.s = settings
        self.tenant_id = settings.tenant_id
        self.redis: Redis = redis or Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=15,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self.config: TenantConfig | None = None
        self.stream = contract.inbound_stream(self.tenant_id)
        self.exit_code: int | None = None
        self._stop = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._order_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._sem = asyncio.Semaphore(max(1, settings.concurrency))
        self._loaded_modules: set[str] = set()
        self._last_activity = time.monotonic()
        self._started = time.monotonic()
        self._lease_ok_at = time.monotonic()
        self._parent = os.getppid()
        self._reload_lock = asyncio.Lock()

    # -- lifecycle --------------------------------------------------------------------------------------------

    def activate(self) -> None:
        """Make this the process's runtime (for the module-level helpers handlers call)."""
        global _current
        _current = self

    def stop(self, code: int, reason: str) -> None:
        if self.exit_code is None:
            self.exit_code = code
            log.info("runtime.stopping", extra={"reason": reason, "exit_code": code})
        self._stop.set()

    def touch(self) -> None:
        """Note activity that is not an inbound entry (keeps the idle timer from firing)."""
        self._last_activity = time.monotonic()

    async def run(self) -> int:
        """Serve until stopped; returns the process exit code (contract.EXIT_*)."""
        self.activate()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, 0, f"signal {sig.name}")
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.s.lease_token is None:
                log.warning("runtime.lease.disabled")
            elif not await self._lease_held():
                log.error("runtime.lease.lost", extra={"expected": self._lease_value})
                self.stop(contract.EXIT_LEASE_LOST, "lease is not ours")
                return contract.EXIT_LEASE_LOST
            if not await self.load_config():
                log.error("runtime.config.missing", extra={"error": "no config document in Redis"})
                self.stop(contract.EXIT_FATAL, "no config")
                return contract.EXIT_FATAL
            for module_name in self.s.plugins:
                import_optional(module_name)
            await self._apply_config()
            await streams.ensure_group(self.redis, self.stream, contract.RUNTIME_GROUP)
            with contextlib.suppress(*redis_errors()):
                await streams.prune_consumers(
                    self.redis, self.stream, contract.RUNTIME_GROUP, keep=self.s.consumer, min_idle_ms=3600_000
                )
            await self.redis.delete(contract.idle_key(self.tenant_id))
            # Subscribe before announcing readiness, then look at the version once: a publish that happened
            # between the first load and the subscription is not missed.
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(contract.config_channel(self.tenant_id))
            counter = await self.redis.get(contract.config_version_key(self.tenant_id))
            if counter is not None and self.config and int(counter) > self.config.version:
                await self.reload_config(reason="start")
            await self._write_ready()
            log.info("runtime.ready", extra={"version": self.config.version if self.config else None})
            tasks = [
                asyncio.create_task(self._consume(), name="consume"),
                asyncio.create_task(self._claim_loop(), name="claim"),
                asyncio.create_task(self._watch_config(pubsub), name="config"),
                asyncio.create_task(self._watchdog(), name="watchdog"),
            ]
            for task in tasks:
                task.add_done_callback(self._task_done)
            await self._stop.wait()
        except Exception:
            log.exception("runtime.fatal")
            self.exit_code = contract.EXIT_FATAL
        finally:
            await self._shutdown(tasks)
        return contract.EXIT_FATAL if self.exit_code is None else self.exit_code

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("runtime.fatal", exc_info=exc, extra={"task": task.get_name()})
            self.stop(contract.EXIT_FATAL, f"task {task.get_name()} failed: {exc!r}")

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self._stop.set()  # loops end on this even if a cancellation is swallowed (asyncio.timeout in 3.11)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)  # a runtime run in-process (tests) leaves the loop as it found it
        for task in tasks:
            task.cancel()
        if self._inflight:
            # Give handlers a moment to finish their reply; whatever is left stays pending and is claimed later.
            _done, pending = await asyncio.wait(list(self._inflight.values()), timeout=self.s.shutdown_grace)
            for task in pending:
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        for hook in _shutdown_hooks:
            try:
                await asyncio.wait_for(hook(self), timeout=2)
            except Exception:
                log.exception("runtime.shutdown_hook.failed")
        with contextlib.suppress(Exception):
            await self.redis.eval(_DELETE_READY_IF_OURS, 1, contract.ready_key(self.tenant_id), str(os.getpid()))
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        log.info("runtime.stopped", extra={"exit_code": self.exit_code})

    # -- lease ------------------------------------------------------------------------------------------------

    @property
    def _lease_value(self) -> str:
        return f"{self.s.host_id}:{self.s.lease_token}"

    async def _lease_held(self) -> bool:
        if self.s.lease_token is None:
            return True
        current = await self.redis.get(contract.lease_key(self.tenant_id))
        return current == self._lease_value

    async def ensure_lease(self) -> None:
        """Raise LeaseLost (and stop the runtime) unless the lease still carries our host and fencing token."""
        if not await self._lease_held():
            self._lease_lost()
        self._lease_ok_at = time.monotonic()

    def _lease_lost(self) -> NoReturn:
        self.stop(contract.EXIT_LEASE_LOST, "lease lost")
        log.error("runtime.lease.lost", extra={"expected": self._lease_value})
        raise LeaseLost(self.tenant_id)

    # -- config -----------------------------------------------------------------------------------------------

    async def load_config(self) -> bool:
        raw = await self.redis.get(contract.config_key(self.tenant_id))
        if raw is None:
            return False
        self.config = TenantConfig.from_json(raw)
        return True

    async def _apply_config(self) -> None:
        """Import the modules the config's channels need and tell every listener about the config."""
        assert self.config is not None
        kinds = {channel.kind for bot in self.config.bots if bot.is_enabled for channel in bot.channels}
        for kind in sorted(kinds):
            module_name = f"bot_runtime.channels.{kind}"
            if module_name not in self._loaded_modules:
                self._loaded_modules.add(module_name)
                if not import_optional(module_name):
                    log.warning("runtime.channel.unavailable", extra={"channel": kind})
        for listener in list(_config_listeners):
            await listener(self, self.config)

    async def reload_config(self, *, reason: str) -> bool:
        """Load the stored document if it is newer than ours; True when it was applied."""
        async with self._reload_lock:
            if self._stop.is_set():
                return False  # stopping (e.g. gone idle): applying now would restart pollers on the way out
            raw = await self.redis.get(contract.config_key(self.tenant_id))
            if raw is None:
                return False
            fresh = TenantConfig.from_json(raw)
            if self.config is not None and fresh.version <= self.config.version:
                return False
            previous = self.config.version if self.config else None
            self.config = fresh
            await self._apply_config()
            await self._write_ready()
            log.info("runtime.config.reloaded", extra={"version": fresh.version, "previous": previous, "via": reason})
            return True

    async def _watch_config(self, pubsub: PubSub) -> None:
        """Reload on the pub/sub notice, and poll the version counter too, because pub/sub drops messages."""
        subscribed = True
        next_poll = time.monotonic() + self.s.config_poll_seconds
        try:
            while not self._stop.is_set():
                try:
                    if not subscribed:
                        await pubsub.subscribe(contract.config_channel(self.tenant_id))
                        subscribed = True
                    message = await pubsub.get_message(timeout=min(1.0, self.s.config_poll_seconds))
                    if message is not None:
                        tenant, _, version = str(message["data"]).rpartition(":")
                        if tenant == self.tenant_id and self.config and int(version or 0) > self.config.version:
                            await self.reload_config(reason="pubsub")
                    if time.monotonic() >= next_poll:
                        next_poll = time.monotonic() + self.s.config_poll_seconds
                        counter = await self.redis.get(contract.config_version_key(self.tenant_id))
                        if self.config and counter is not None and int(counter) > self.config.version:
                            await self.reload_config(reason="poll")
                except (*redis_errors(), OSError) as exc:
                    log.warning("runtime.config.watch_error", extra={"error": repr(exc)})
                    subscribed = False
                    with contextlib.suppress(Exception):
                        await pubsub.reset()
                    await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _write_ready(self) -> None:
        key = contract.ready_key(self.tenant_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "pid": os.getpid(),
                    "host": self.s.host_id,
                    "token": "" if self.s.lease_token is None else self.s.lease_token,
                    "version": self.config.version if self.config else 0,
                    "started_at": f"{time.time() - (time.monotonic() - self._started):.3f}",
                },
            )
            pipe.expire(key, self._ready_ttl)
            await pipe.execute()

    @property
    def _ready_ttl(self) -> int:
        return int(max(10, self.s.lease_ttl * 2))

    # -- watchdog ---------------------------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        """Lease, parent and liveness checks every few seconds, plus the in-flight entries' keep-alive."""
        next_lease = next_fresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.s.crash_after is not None and now - self._started >= self.s.crash_after:
                reason = f"fault injection: BOTFACTORY_RUNTIME_CRASH_AFTER={self.s.crash_after}"
                log.error("runtime.fault.crash", extra={"error": reason})
                sys.stderr.flush()
                os._exit(contract.EXIT_FATAL)
            if os.getppid() != self._parent:
                log.error("runtime.orphaned", extra={"parent": self._parent})
                self.stop(contract.EXIT_ORPHANED, "supervisord is gone")
                return
            if now >= next_lease:
                next_lease = now + self.s.lease_check_seconds
                try:
                    if not await self._lease_held():
                        log.error("runtime.lease.lost", extra={"expected": self._lease_value})
                        self.stop(contract.EXIT_LEASE_LOST, "lease lost")
                        return
                    self._lease_ok_at = now
                    await self.redis.expire(contract.ready_key(self.tenant_id), self._ready_ttl)
                except (*redis_errors(), OSError) as exc:
                    # Unreachable Redis for longer than the lease TTL means the lease has expired by now.
                    log.warning("runtime.watchdog.redis_error", extra={"error": repr(exc)})
                    if now - self._lease_ok_at > self.s.lease_ttl and self.s.lease_token is not None:
                        self.stop(contract.EXIT_LEASE_LOST, "lease unverifiable")
                        return
            if now >= next_fresh:
                next_fresh = now + self.s.claim_idle_ms / 3000
                with contextlib.suppress(*redis_errors(), OSError):
                    await self._keep_inflight_fresh()
            await asyncio.sleep(0.25)

    async def _keep_inflight_fresh(self) -> None:
        # XCLAIM to ourselves with JUSTID resets an entry's idle time without counting a delivery, so a long
        # handler's entry is never mistaken for a dead consumer's (by us or by an overlapping runtime).
        if self._inflight:
            await self.redis.xclaim(
                self.stream, contract.RUNTIME_GROUP, self.s.consumer, 0, list(self._inflight), justid=True
            )

    # -- inbound ----------------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        while not self._stop.is_set():
            free = self.s.max_inflight - len(self._inflight)
            if free <= 0:
                await asyncio.wait(list(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                entries = await streams.read_new(
                    self.redis, self.stream, contract.RUNTIME_GROUP, self.s.consumer, count=min(free, 32), block_ms=1000
                )
                for entry_id, fields in entries:
                    self._submit(entry_id, fields, redelivered=False)
                if not entries and await self._idle_due():
                    await self._go_idle()
            except (*redis_errors(), OSError) as exc:
                # A Redis blip in the idle check too: retried on the next turn rather than ending the process.
                log.warning("runtime.inbound.read_error", extra={"error": repr(exc)})
                await asyncio.sleep(1)

    async def _idle_due(self) -> bool:
        if self.s.idle_seconds <= 0 or self._inflight:
            return False
        if time.monotonic() - self._last_activity < self.s.idle_seconds:
            return False
        if any(veto() for veto in _idle_vetoes):
            return False
        pending = await self.redis.xpending(self.stream, contract.RUNTIME_GROUP)
        return int(pending["pending"]) == 0

    async def _go_idle(self) -> None:
        # Mark first, then look once more: a message XADDed after this look is followed by wake_tenant, which
        # deletes the marker, so the host starts us again; one XADDed before it is seen here. Sources that queue
        # without waking (our own Telegram pollers) are stopped in between by the idle hooks, and no config reload
        # may restart them meanwhile (hence the reload lock).
        async with self._reload_lock:
            await self.redis.set(contract.idle_key(self.tenant_id), f"{time.time():.3f}")
            for hook in _idle_hooks:
                try:
                    await hook(self)
                except Exception:
                    log.exception("runtime.idle_hook.failed")
            try:
                entries = await streams.read_new(
                    self.redis, self.stream, contract.RUNTIME_GROUP, self.s.consumer, count=32, block_ms=None
                )
            except (*redis_errors(), OSError):
                # Carry on serving as before the attempt (the caller logs and retries): marker off, pollers back.
                with contextlib.suppress(*redis_errors(), OSError):
                    await self.redis.delete(contract.idle_key(self.tenant_id))
                await self._resume_after_idle_hooks()
                raise
            if entries:
                await self.redis.delete(contract.idle_key(self.tenant_id))
                for entry_id, fields in entries:
                    self._submit(entry_id, fields, redelivered=False)
                await self._resume_after_idle_hooks()
                return
            log.info("runtime.idle", extra={"idle_seconds": self.s.idle_seconds})
            self.stop(contract.EXIT_IDLE, "idle")

    async def _resume_after_idle_hooks(self) -> None:
        """Restart what the idle hooks stopped (e.g. Telegram pollers) by running the config listeners again."""
        if _idle_hooks:
            try:
                await self._apply_config()
            except Exception:
                log.exception("runtime.resume.failed")

    async def _claim_loop(self) -> None:
        """Take over entries a dead runtime left pending (at start, then every few seconds)."""
        while not self._stop.is_set():
            try:
                claimed = await streams.claim_stale(
                    self.redis, self.stream, contract.RUNTIME_GROUP, self.s.consumer, min_idle_ms=self.s.claim_idle_ms
                )
                fresh = [(entry_id, fields) for entry_id, fields in claimed if entry_id not in self._inflight]
                if fresh:
                    counts = await streams.delivery_counts(
                        self.redis, self.stream, contract.RUNTIME_GROUP, [entry_id for entry_id, _ in fresh]
                    )
                    log.info("runtime.inbound.claimed", extra={"count": len(fresh)})
                    for entry_id, fields in fresh:
                        if counts.get(entry_id, 0) > self.s.max_deliveries:
                            await self._dead_letter(entry_id, fields, "delivered too many times (crashes the runtime?)")
                        else:
                            self._submit(entry_id, fields, redelivered=True)
            except (*redis_errors(), OSError) as exc:
                log.warning("runtime.inbound.claim_error", extra={"error": repr(exc)})
            await asyncio.sleep(self.s.claim_every_seconds)

    def _submit(self, entry_id: str, fields: dict[str, str], *, redelivered: bool) -> None:
        if entry_id in self._inflight:
            return
        self._last_activity = time.monotonic()
        task = asyncio.create_task(self._run_entry(entry_id, fields, redelivered), name=f"entry {entry_id}")
        self._inflight[entry_id] = task
        task.add_done_callback(lambda _t: self._inflight.pop(entry_id, None))

    @staticmethod
    def _parse(fields: dict[str, str]) -> InboundEvent | Exception:
        """The entry's event, or why it cannot be read (parsed once per entry: order key and processing share it)."""
        try:
            return InboundEvent.from_fields(fields)  # type: ignore[arg-type]
        except Exception as exc:
            return exc

    @staticmethod
    def _order_key(event: InboundEvent | Exception | None) -> str:
        if not isinstance(event, InboundEvent):
            return ""
        try:
            registration = handler_for(event.kind)
            return registration.order_key(event) if registration else event.bot_id
        except Exception:
            return ""

    async def _run_entry(self, entry_id: str, fields: dict[str, str], redelivered: bool) -> None:
        event = self._parse(fields) if fields else None
        key = self._order_key(event)
        lock, users = self._order_locks.get(key, (asyncio.Lock(), 0))
        self._order_locks[key] = (lock, users + 1)
        try:
            async with lock, self._sem:
                if self._stop.is_set():
                    return  # leave it pending; the next runtime claims it
                await self._process(entry_id, fields, event, redelivered)
                self._last_activity = time.monotonic()
        except LeaseLost:
            pass  # not acked: whoever holds the lease now claims it
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acked: the claim loop retries it after claim_idle, and gives up after max_deliveries.
            log.exception("runtime.inbound.failed", extra={"entry_id": entry_id})
        finally:
            lock, users = self._order_locks[key]
            if users <= 1:
                del self._order_locks[key]
            else:
                self._order_locks[key] = (lock, users - 1)

    async def _process(
        self, entry_id: str, fields: dict[str, str], event: InboundEvent | Exception | None, redelivered: bool
    ) -> None:
        if event is None:  # no fields: the stream item was trimmed while pending
            await self.redis.xack(self.stream, contract.RUNTIME_GROUP, entry_id)
            return
        if isinstance(event, Exception):
            await self._dead_letter(entry_id, fields, f"malformed entry: {event!r}")
            return
        # One round trip: lease check, dedupe marker (it holds the entry id, so our own redelivery of the same entry
        # passes and only a different entry carrying an already seen event id counts as a duplicate), sent marker.
        admitted = await self.redis.eval(
            _ADMIT,
            3,
            contract.lease_key(self.tenant_id),
            contract.dedupe_key(self.tenant_id, event.event_id),
            contract.sent_key(self.tenant_id, event.event_id),
            "" if self.s.lease_token is None else self._lease_value,
            entry_id,
            self.s.dedupe_ttl,
        )
        if not int(admitted[0]):
            self._lease_lost()
        self._lease_ok_at = time.monotonic()
        status = int(admitted[1])
        if status == 3:
            log.info("runtime.inbound.duplicate", extra={"event_id": event.event_id, "entry_id": entry_id})
            await self.redis.xack(self.stream, contract.RUNTIME_GROUP, entry_id)
            return
        if status == 2:
            redelivered = True
        if int(admitted[2]):
            log.info("runtime.inbound.already_sent", extra={"event_id": event.event_id})
            await self.redis.xack(self.stream, contract.RUNTIME_GROUP, entry_id)
            return
        registration = handler_for(event.kind)
        if registration is None:
            await self._dead_letter(entry_id, fields, f"no handler for kind {event.kind!r}")
            return
        ctx = HandlerContext(self, event, entry_id, redelivered=redelivered)
        started = time.monotonic()
        for attempt in range(1, self.s.handler_attempts + 1):
            try:
                await asyncio.wait_for(registration.handler(ctx), timeout=self.s.handler_timeout)
                break
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                log.warning(
                    "runtime.handler.failed",
                    exc_info=True,
                    extra={"event_id": event.event_id, "kind": event.kind, "attempt": attempt},
                )
                if ctx.sent:
                    break  # the customer has the reply; record it rather than answer twice
                if attempt == self.s.handler_attempts:
                    ctx.emit("runtime.error", channel=event.kind.split(".", 1)[0], data={"error": repr(exc)[:500]})
                    await self._dead_letter(entry_id, fields, f"handler failed: {exc!r}", events=ctx.events)
                    return
                ctx.events.clear()
                ctx.redelivered = True
                await asyncio.sleep(0.5 * attempt)
        await streams.commit(
            self.redis,
            self.stream,
            contract.RUNTIME_GROUP,
            entry_id,
            events=ctx.events,
            sent_key=contract.sent_key(self.tenant_id, event.event_id) if ctx.sent else None,
            sent_ttl=self.s.sent_ttl,
            events_maxlen=self.s.events_maxlen,
        )
        log.debug(
            "runtime.inbound.done",
            extra={"event_id": event.event_id, "kind": event.kind, "ms": round((time.monotonic() - started) * 1000)},
        )

    async def _dead_letter(
        self, entry_id: str, fields: dict[str, str], reason: str, *, events: list[RuntimeEvent] | None = None
    ) -> None:
        log.error("runtime.inbound.dead_letter", extra={"entry_id": entry_id, "reason": reason})
        await streams.dead_letter(
            self.redis, self.tenant_id, self.stream, contract.RUNTIME_GROUP, entry_id, fields, reason, events=events
        )

    async def emit(self, event: RuntimeEvent) -> None:
        """Append an event outside any inbound entry (e.g. a poller noticing a blocked chat)."""
        await self.redis.xadd(
            contract.events_stream(), event.to_fields(), maxlen=self.s.events_maxlen, approximate=True
        )

    # -- limits -----------------------------------------------------------------------------------------------

    async def count_message(self, tenant_cfg: TenantConfig, *, event_id: str | None = None) -> bool:
        """Count a customer message for today (UTC); with ``event_id``, once per event (see ``counted_key``)."""
        key = contract.usage_key(tenant_cfg.tenant_id, utc_day())
        if event_id is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, 2 * DAY_SECONDS, nx=True)
                count, _ = await pipe.execute()
        else:
            marker = counted_key(tenant_cfg.tenant_id, event_id)
            count = await self.redis.eval(streams.COUNT_ONCE, 2, key, marker, 2 * DAY_SECONDS, self.s.dedupe_ttl)
        limit = tenant_cfg.plan.messages_per_day
        return limit is None or int(count) <= limit

    async def should_send_limit_notice(self, tenant_cfg: TenantConfig, chat: str) -> bool:
        key = contract.limit_notice_key(tenant_cfg.tenant_id, utc_day(), chat)
        return bool(await self.redis.set(key, "1", nx=True, ex=2 * DAY_SECONDS))
