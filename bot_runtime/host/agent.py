"""The runtime host agent (``botfactory runtime-host``): leases tenants and runs them under its own supervisord.

A keep-alive task heartbeats the host key and renews the leases about every second, on its own: it never waits on
supervisord, whose XML-RPC calls all run on one worker thread (a batch of starts can take seconds while runtimes
import). Every tick (about 1 s) the agent looks at its processes and reads the desired-runtimes set: a desired tenant
that nobody leases (and that is not held by an operator) is leased (SET NX PX, ``host:fencing-token``) and started, or
kept idle if its idle marker is set; a tenant that is no longer desired, or held, is stopped and its lease released; a
lease that expired with its host is simply free, so a living host takes it over. Starts go through a queue: at most
``max_starting`` runtimes (RUNTIME_HOST_MAX_STARTING, default 10) are starting (spawned, not ready yet) at once, and no
lease is taken for a runtime there is no slot for.

Exits are counted: a runtime that dies ``crash_limit`` times within ``crash_window`` seconds is crash-looping: its
program is removed and it is retried after 1, 2, 4 … minutes (capped), while the host keeps its lease so the crash
does not hop from host to host. A runtime that exits idle (exit 0 with ``idle_key`` set) is unloaded but its host
keeps the lease (state ``idle``): the next message's ``wake_tenant`` (wake channel), or the next tick once the marker
is gone, starts it again here. Meanwhile the host's idle poller (:mod:`bot_runtime.host.pollers`, a service every
agent runs) long-polls the tenant's polling-mode Telegram bots and wakes it on the next update. An idle tenant whose
host died is taken over, still idle, by a living host. Hosts take no more than a fair share of the free tenants, and
a host above the even split hands tenants to one with room (``_rebalance``), so a host that joins later fills up too.

Besides the tick: ``wake_channel`` starts a tenant at once, ``control_stream(host)`` carries operator commands
(start / stop / restart), ``log_request_channel(host)`` asks for a log tail. Stats go to ``runtime_stats_key``
every few seconds. SIGTERM stops every runtime, releases the leases and shuts supervisord down.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import importlib
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import time
import xmlrpc.client
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bot_runtime import contract
from bot_runtime import lease as leases
from bot_runtime.host.supervisor import RUNNING_STATES, Supervisord, pid_alive, program_name, read_rss_bytes
from bot_runtime.lease import Lease

log = logging.getLogger("bot_runtime.host")
T = TypeVar("T")

TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HOST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CONTROL_GROUP = "host-agent"
STATS_TTL = 7 * 24 * 3600
REPLY_TTL = 60
COMMAND_MAX_AGE = 120.0

# What a runtime may see of the agent's environment: Redis, its secret key, the lease and idle settings, log level,
# external base URLs and the runtime's own knobs. Database credentials and the control plane's secrets stay out.
PASSTHROUGH_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "REDIS_URL",
        "REDIS_KEY_PREFIX",
        "LOG_LEVEL",
        "ENVIRONMENT",
        "DOMAIN_URL",
        "TELEGRAM_API_BASE_URL",
        "TELEGRAM_MODE",
        "GRAPH_API_BASE_URL",
        "GEMINI_API_BASE_URL",
        "OPENAI_COMPAT_BASE_URL",
    }
)
PASSTHROUGH_PREFIXES = ("RUNTIME_", "BOTFACTORY_RUNTIME_")
# RUNTIME_* knobs that belong to the host itself, not to the runtimes.
HOST_ONLY_ENV = frozenset({"RUNTIME_HOST_DIR", "RUNTIME_HOST_INET_PORT", "RUNTIME_HOST_SERVICES"})
# Host services every agent runs, before any listed in RUNTIME_HOST_SERVICES.
DEFAULT_SERVICES = ("bot_runtime.host.pollers",)


def runtime_environment(environ: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in environ.items()
        if (key in PASSTHROUGH_ENV or key.startswith(PASSTHROUGH_PREFIXES)) and key not in HOST_ONLY_ENV
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _env_float(environ: dict[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    return float(raw) if raw else default


@dataclass(slots=True)
class HostConfig:
    """Knobs of one host agent; ``from_env`` reads them (tests shorten the timings through the same variables)."""

    host_id: str
    redis_url: str
    state_dir: Path
    runtime_env: dict[str, str]
    project_root: Path
    python: str = sys.executable
    lease_ttl: float = 15.0
    tick: float = 1.0
    stats_every: float = 3.0
    crash_limit: int = 5
    crash_window: float = 60.0
    backoff_base: float = 60.0
    backoff_cap: float = 3600.0
    stable_after: float = 600.0  # a runtime up this long forgets its crash-loop history
    stop_grace: float = 6.0
    start_batch: int = 50  # programs started per tick at most
    # Runtimes that may be starting (spawned, not ready yet) at once: 50 importing together on a small machine starve
    # supervisord and the agent alike. One that has not reported ready after ``start_slot_seconds`` frees its slot.
    max_starting: int = 10
    start_slot_seconds: float = 60.0
    max_runtimes: int | None = None
    # Rebalancing: a host above the even split hands a tenant to a host with room, at most one running tenant per
    # ``rebalance_every`` seconds (a moved runtime pauses for about a cold start); idle ones (no process) move freely.
    rebalance_every: float = 5.0
    inet_port: int | None = None
    # Modules with ``async def host_service(agent: HostAgent) -> None``, run beside the agent for its lifetime
    # (by default the per-host poller that long-polls idle tenants' Telegram bots and wakes them).
    services: list[str] = field(default_factory=lambda: list(DEFAULT_SERVICES))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, default_root: Path | None = None) -> HostConfig:
        env = dict(os.environ if environ is None else environ)
        host_id = env.get("RUNTIME_HOST_ID") or socket.gethostname().split(".")[0]
        if not HOST_ID.match(host_id):
            raise ValueError(f"RUNTIME_HOST_ID {host_id!r} must be letters, digits, '.', '-' or '_'")
        project_root = Path(__file__).resolve().parents[2]
        base = default_root or project_root
        state_dir = Path(env.get("RUNTIME_HOST_DIR") or base / ".data" / "runtime-host" / host_id).resolve()
        env["RUNTIME_HOST_ID"] = host_id
        max_runtimes = env.get("RUNTIME_HOST_MAX_RUNTIMES", "").strip()
        inet_port = env.get("RUNTIME_HOST_INET_PORT", "").strip()
        extra_services = [name.strip() for name in env.get("RUNTIME_HOST_SERVICES", "").split(",") if name.strip()]
        return cls(
            host_id=host_id,
            redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            state_dir=state_dir,
            runtime_env=runtime_environment(env),
            project_root=project_root,
            lease_ttl=_env_float(env, "RUNTIME_LEASE_TTL", 15.0),
            tick=_env_float(env, "RUNTIME_HOST_TICK", 1.0),
            stats_every=_env_float(env, "RUNTIME_HOST_STATS_SECONDS", 3.0),
            crash_limit=int(_env_float(env, "RUNTIME_CRASH_LIMIT", 5)),
            crash_window=_env_float(env, "RUNTIME_CRASH_WINDOW_SECONDS", 60.0),
            backoff_base=_env_float(env, "RUNTIME_CRASH_BACKOFF_SECONDS", 60.0),
            backoff_cap=_env_float(env, "RUNTIME_CRASH_BACKOFF_MAX_SECONDS", 3600.0),
            stable_after=_env_float(env, "RUNTIME_CRASH_STABLE_SECONDS", 600.0),
            start_batch=int(_env_float(env, "RUNTIME_HOST_START_BATCH", 50)),
            max_starting=max(1, int(_env_float(env, "RUNTIME_HOST_MAX_STARTING", 10))),
            max_runtimes=int(max_runtimes) if max_runtimes else None,
            rebalance_every=_env_float(env, "RUNTIME_HOST_REBALANCE_SECONDS", 5.0),
            inet_port=int(inet_port) if inet_port else None,
            services=list(dict.fromkeys([*DEFAULT_SERVICES, *extra_services])),
        )

    @property
    def lease_ttl_ms(self) -> int:
        return int(self.lease_ttl * 1000)

    @property
    def renew_every(self) -> float:
        return min(self.tick, self.lease_ttl / 3)


@dataclass(eq=False)
class Managed:
    """A tenant this host holds the lease of, and what its program is doing."""

    tenant_id: str
    lease: Lease
    state: str = "starting"  # contract.RUNTIME_STATES; "idle": no process, the lease kept for the next wake-up
    pid: int = 0
    started_at: float = 0.0  # wall clock of the current process start
    restarts: int = 0
    exits: deque[float] = field(default_factory=deque)
    crash_level: int = 0
    retry_at: float = 0.0  # wall clock
    last_error: str = ""
    exit_status: int | None = None
    loaded: bool = False  # program file written and group added
    queued: bool = False  # waiting in the agent's start queue (state "starting", nothing spawned yet)
    after_stop: str = ""  # what to do once the process is down: forget | restart
    final_state: str = "stopped"
    reason: str = ""
    lost: bool = False  # the lease is no longer ours: stop without releasing anything
    idle_since: float = 0.0  # wall clock of the last switch to "idle"

    @property
    def name(self) -> str:
        return program_name(self.tenant_id)


def tail_lines(path: Path, lines: int, *, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``lines`` lines of a file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            chunk = min(size, max_bytes)
            handle.seek(size - chunk)
            data = handle.read(chunk)
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    if chunk < size and text:
        text = text[1:]  # the first line is probably cut
    return text[-lines:] if lines > 0 else []


def last_error_from(lines: list[str]) -> str:
    """A one-line summary of why a runtime died, from the end of its stderr (structured JSON or a traceback)."""
    for line in reversed(lines):
        line = line.strip()
        if not line:
            continue
        with contextlib.suppress(ValueError, AttributeError):
            record = json.loads(line)
            if record.get("level") not in ("error", "critical"):
                continue
            detail = record.get("error") or record.get("reason") or ""
            exc = str(record.get("exc") or "").strip().splitlines()
            if exc:
                detail = exc[-1]
            return f"{record.get('event', '')}: {detail}".strip(": ")[:500]
        return line[:500]
    return ""


class HostAgent:
    def __init__(self, config: HostConfig, redis: Redis | None = None) -> None:
        self.cfg = config
        self.host_id = config.host_id
        self.redis: Redis = redis or Redis.from_url(
            config.redis_url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5
        )
        supervisor_env = {**config.runtime_env, "RUNTIME_HOST_ID": config.host_id}
        self.supervisor = Supervisord(
            config.state_dir,
            identifier=f"botfactory-{config.host_id}",
            python=config.python,
            project_root=config.project_root,
            environment=supervisor_env,
            inet_port=config.inet_port,
            minfds=int(os.environ.get("RUNTIME_HOST_MINFDS", "1024")),
        )
        self.managed: dict[str, Managed] = {}
        self._actions: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._kick = asyncio.Event()
        self._stopping = asyncio.Event()
        self._started = time.time()
        self._live_hosts = 1
        self._other_loads: dict[str, int] = {}  # living hosts' runtime counts, from their heartbeats
        self._handed_off: dict[str, float] = {}  # tenant → monotonic time until which we leave it to the others
        self._next_rebalance = 0.0
        self._next_stats = 0.0
        self._lock_handle: IO[str] | None = None
        self._warned: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._start_queue: dict[str, Managed] = {}
        # Every slow supervisord call (a start batch, getAllProcessInfo) runs on this one thread, so
        # the loop keeps renewing leases and serving listeners while supervisord is busy spawning runtimes.
        self._rpc_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supervisord-rpc")

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _lock_state_dir(self) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.cfg.state_dir / "agent.lock", "a")  # held for the agent's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError(f"another host agent is using {self.cfg.state_dir}") from None
        self._lock_handle = handle

    def request_stop(self) -> None:
        self._stopping.set()
        self._kick.set()

    def wake(self, tenant_id: str) -> None:
        """Start an idle desired tenant now: one this host keeps idle, or an unleased one if it wins the lease (host
        services call this)."""
        self._actions.put_nowait(("wake", tenant_id))
        self._kick.set()

    def idle_tenants(self) -> dict[str, float]:
        """The tenants this host holds the lease of while their runtime is idle (not running): id → idle since."""
        return {managed.tenant_id: managed.idle_since for managed in self.managed.values() if managed.state == "idle"}

    async def run(self) -> int:
        self._lock_state_dir()
        self.supervisor.start()
        log.info(
            "host.started",
            extra={"host_id": self.host_id, "state_dir": str(self.cfg.state_dir), "supervisord": self.supervisor.pid},
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        listeners = [
            asyncio.create_task(self._keep_alive(), name="keepalive"),
            asyncio.create_task(self._listen_pubsub(), name="pubsub"),
            asyncio.create_task(self._listen_control(), name="control"),
            *(asyncio.create_task(self._run_service(name), name=name) for name in self.cfg.services),
        ]
        code = 0
        try:
            next_tick = 0.0
            while not self._stopping.is_set():
                self._kick.clear()  # before draining: a wake that lands during the tick is not slept through
                await self._drain_actions()
                if self._start_queue:
                    await self._mark_ready()  # a ready runtime frees its start slot for the next one now
                await self._flush_starts()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.cfg.tick
                    try:
                        await self.tick()
                    except (RedisError, OSError, xmlrpc.client.Error) as exc:
                        log.warning("host.tick.failed", extra={"error": repr(exc)})
                    except Exception:
                        log.exception("host.tick.failed")  # a bug in one tick must not stop every runtime
                    if self.supervisor.process and self.supervisor.process.poll() is not None:
                        log.error("host.supervisord.died", extra={"code": self.supervisor.process.returncode})
                        code = 1
                        break
                if not self._actions.empty():
                    continue
                wait = max(0.0, next_tick - time.monotonic())
                if self._start_queue:
                    wait = min(wait, 0.2)  # runtimes wait for start slots: look for ready ones more often
                stopping = [managed for managed in self.managed.values() if managed.state == "stopping"]
                if stopping:
                    # Finish stops (and operator restarts) within ~0.1 s rather than at the next tick.
                    wait = min(wait, 0.1)
                    with contextlib.suppress(OSError, xmlrpc.client.Error):
                        self._check_stopping(stopping)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), timeout=wait)
        except Exception:
            log.exception("host.fatal")
            code = 1
        finally:
            self._stopping.set()  # the listeners' loops end on this even if a cancellation gets swallowed
            for task in listeners:
                task.cancel()
            await asyncio.wait(listeners, timeout=3)
            await self.shutdown()
        return code

    async def shutdown(self) -> None:
        """Stop every runtime (in parallel), then release the leases, then stop supervisord."""
        log.info("host.stopping", extra={"runtimes": len(self.managed)})
        self._rpc_thread.shutdown(wait=True)  # a start batch in flight finishes first, so its programs get stopped
        await self._drain_actions()  # pending "forget"s release their leases; wakes and commands are refused now
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            for managed in self.managed.values():
                self.supervisor.stop_process(managed.name)
            deadline = time.monotonic() + self.cfg.stop_grace
            while time.monotonic() < deadline:
                info = self.supervisor.all_info()
                if not any(item["statename"] in RUNNING_STATES for item in info.values()):
                    break
                await asyncio.sleep(0.05)
        for managed in list(self.managed.values()):
            with contextlib.suppress(RedisError, OSError):
                await leases.release(self.redis, managed.lease)
                if managed.state != "idle":  # an idle one stays idle (its marker is set), for whoever takes it
                    managed.state, managed.reason = "stopped", "host shutdown"
                managed.pid = 0
                await self._write_stats(managed)
        self.managed.clear()
        self._start_queue.clear()
        self.supervisor.shutdown()
        self.supervisor.clear_programs()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(contract.host_key(self.host_id))
            await self.redis.srem(contract.hosts_key(), self.host_id)
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        if self._lock_handle is not None:
            self._lock_handle.close()
        log.info("host.stopped")

    # -- the tick ---------------------------------------------------------------------------------------------

    async def _rpc(self, call: Callable[..., T], *args: Any) -> T:
        """Run a (blocking) supervisord call on the agent's supervisord thread."""
        return await asyncio.get_running_loop().run_in_executor(self._rpc_thread, functools.partial(call, *args))

    async def _keep_alive(self) -> None:
        """Heartbeat and lease renewal on their own schedule: they never wait on supervisord or on the tick."""
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self._heartbeat()
                await self._renew()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("host.keepalive.failed", extra={"error": repr(exc)})
            except Exception:
                log.exception("host.keepalive.failed")
            await asyncio.sleep(max(0.05, self.cfg.renew_every - (time.monotonic() - started)))

    async def tick(self) -> None:
        self._observe_processes(await self._rpc(self.supervisor.all_info))
        await self._mark_ready()
        await self._reconcile()
        await self._retry_crash_looping()
        await self._flush_starts()
        if time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + self.cfg.stats_every
            await self._publish_stats()

    async def _heartbeat(self) -> None:
        key = contract.host_key(self.host_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                key,
                mapping={
                    "host_id": self.host_id,
                    "pid": os.getpid(),
                    "supervisord_pid": self.supervisor.pid or 0,
                    "runtimes": len(self.managed),
                    "started_at": f"{self._started:.3f}",
                    "updated_at": f"{time.time():.3f}",
                },
            )
            pipe.pexpire(key, self.cfg.lease_ttl_ms)
            pipe.sadd(contract.hosts_key(), self.host_id)
            pipe.smembers(contract.hosts_key())
            *_, hosts = await pipe.execute()
        hosts = sorted(hosts)
        # One read per host gives both facts: every heartbeat writes "runtimes", so no field means no living host.
        async with self.redis.pipeline(transaction=False) as pipe:
            for host in hosts:
                pipe.hget(contract.host_key(host), "runtimes")
            counts = dict(zip(hosts, await pipe.execute(), strict=True))
        dead = [host for host, count in counts.items() if count is None]
        if dead:
            await self.redis.srem(contract.hosts_key(), *dead)
        self._live_hosts = max(1, len(hosts) - len(dead))
        self._other_loads = {
            host: int(count) for host, count in counts.items() if count is not None and host != self.host_id
        }

    async def _renew(self) -> None:
        held = [managed for managed in self.managed.values() if not managed.lost]
        results = await leases.renew_many(self.redis, [managed.lease for managed in held], self.cfg.lease_ttl_ms)
        for managed, ok in zip(held, results, strict=True):
            if not ok and not managed.lost:
                log.error("host.lease.lost", extra={"tenant_id": managed.tenant_id})
                managed.lost = True
                self._actions.put_nowait(("lease-lost", managed))  # stopped by the main loop, which owns programs
                self._kick.set()

    def _observe_processes(self, info: dict[str, dict[str, Any]]) -> None:
        for managed in list(self.managed.values()):
            if managed.queued:
                continue
            if not managed.loaded:
                if managed.state == "starting":  # supervisord refused the program: count it as a failed start
                    self._handle_exit(managed, None)
                continue
            item = info.get(managed.name)
            state = item["statename"] if item else "ABSENT"
            if managed.state == "stopping":
                if state not in RUNNING_STATES:
                    self._finish_stop(managed)
                continue
            if managed.state not in ("starting", "running"):
                continue
            if state in RUNNING_STATES:
                managed.pid = int(item["pid"]) if item else 0
                if managed.state == "running" and time.time() - managed.started_at > self.cfg.stable_after:
                    managed.crash_level = 0
                continue
            self._handle_exit(managed, item)

    def _check_stopping(self, stopping: list[Managed]) -> None:
        for managed in stopping:
            if not managed.loaded:
                continue
            try:
                state = self.supervisor.rpc("getProcessInfo", managed.name)["statename"]
            except xmlrpc.client.Fault:
                state = "ABSENT"
            if state not in RUNNING_STATES and managed.state == "stopping":
                self._finish_stop(managed)

    def _handle_exit(self, managed: Managed, item: dict[str, Any] | None) -> None:
        status = int(item["exitstatus"]) if item else -1
        managed.exit_status = status
        managed.pid = 0
        statename = item["statename"] if item else "ABSENT"
        # BACKOFF/FATAL mean the program never ran (bad command, exec error); spawnerr says why. After a real run
        # supervisord also fills spawnerr ("Bad exit code 1"), so the stderr tail is the better story there.
        spawn_error = str(item.get("spawnerr") or "unknown") if statename in ("BACKOFF", "FATAL") and item else ""
        if spawn_error:
            managed.last_error = f"spawn failed: {spawn_error}"[:500]
        if status == contract.EXIT_IDLE and statename == "EXITED":
            # Idle or a clean stop someone else asked for; the idle marker tells them apart (checked async).
            self._actions.put_nowait(("exited-clean", managed.tenant_id))
            managed.state = "exited"
            return
        if item is None:
            managed.last_error = managed.last_error or "the program is missing from supervisord"
        elif not spawn_error:
            lines = tail_lines(self.supervisor.log_file(managed.tenant_id), 40)
            managed.last_error = last_error_from(lines) or f"exit status {status}"
        now = time.time()
        managed.exits.append(now)
        while managed.exits and managed.exits[0] < now - self.cfg.crash_window:
            managed.exits.popleft()
        log.warning(
            "host.runtime.exited",
            extra={"tenant_id": managed.tenant_id, "status": status, "error": managed.last_error},
        )
        if len(managed.exits) >= self.cfg.crash_limit:
            managed.crash_level += 1
            delay = min(self.cfg.backoff_base * 2 ** (managed.crash_level - 1), self.cfg.backoff_cap)
            managed.retry_at = now + delay
            managed.exits.clear()
            managed.state = "crash-looping"
            self._unload(managed)
            log.error(
                "host.runtime.crash_looping",
                extra={"tenant_id": managed.tenant_id, "retry_in": delay, "error": managed.last_error},
            )
            self._actions.put_nowait(("stats", managed.tenant_id))
            return
        self._restart_now(managed)

    def _restart_now(self, managed: Managed) -> None:
        managed.restarts += 1
        self._start(managed)

    async def _mark_ready(self) -> None:
        starting = [
            managed
            for managed in self.managed.values()
            if managed.state == "starting" and managed.pid and not managed.queued
        ]
        if not starting:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for managed in starting:
                pipe.hget(contract.ready_key(managed.tenant_id), "pid")
            pids = await pipe.execute()
        for managed, pid in zip(starting, pids, strict=True):
            if pid and int(pid) == managed.pid:
                managed.state = "running"
                log.info("host.runtime.ready", extra={"tenant_id": managed.tenant_id, "pid": managed.pid})
                self._actions.put_nowait(("stats", managed.tenant_id))

    async def _reconcile(self) -> None:
        desired = set(await self.redis.smembers(contract.desired_runtimes_key()))
        for tenant_id in [tenant for tenant in desired if not TENANT_ID.match(tenant)]:
            desired.discard(tenant_id)
            if tenant_id not in self._warned:
                self._warned.add(tenant_id)
                log.error("host.tenant.invalid_id", extra={"tenant": tenant_id[:100]})
        for managed in list(self.managed.values()):
            if managed.tenant_id not in desired and managed.state != "stopping":
                self._stop(managed, after="forget", final_state="stopped", reason="not desired")
        tenants = sorted(desired)
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant_id in tenants:
                pipe.get(contract.lease_key(tenant_id))
                pipe.exists(contract.idle_key(tenant_id))
                pipe.exists(contract.hold_key(tenant_id))
            flat = await pipe.execute()
        free: list[str] = []
        batch: list[Managed] = []
        room = min(self.cfg.start_batch, self._start_slots() - len(self._start_queue))
        active = 0
        idle_tenants: set[str] = set()
        for index, tenant_id in enumerate(tenants):
            lease_value, idle, held = flat[3 * index : 3 * index + 3]
            managed = self.managed.get(tenant_id)
            if held:
                if managed and managed.state != "stopping":
                    self._stop(managed, after="forget", final_state="stopped", reason="held by operator")
                continue
            active += 1
            if idle:
                idle_tenants.add(tenant_id)
            if managed:
                if managed.state == "idle" and not idle and len(batch) < room:
                    batch.append(managed)  # woken, but the wake notice was lost (pub/sub drops): start it now
                continue
            holder = leases.parse(lease_value)
            if holder is None:
                free.append(tenant_id)
            elif holder[0] == self.host_id and (idle or len(batch) < room):
                # Ours from before an agent restart (same host id): adopt it with its token.
                log.info("host.lease.adopted", extra={"tenant_id": tenant_id, "token": holder[1]})
                adopted = self._take(Lease(tenant_id, self.host_id, holder[1]))
                if idle:
                    self._keep_idle(adopted)
                else:
                    batch.append(adopted)
        # Take no more than a fair share, so hosts that start together split the tenants between them, and no more
        # than a batch per tick (nor more than the free start slots): runtimes importing at once starve the machine,
        # and a lease taken for a runtime this host cannot start yet is better left to another host.
        share = math.ceil(active / self._live_hosts) + 1
        if self.cfg.max_runtimes is not None:
            share = min(share, self.cfg.max_runtimes)
        random.shuffle(free)
        now = time.monotonic()
        self._handed_off = {tenant: until for tenant, until in self._handed_off.items() if until > now}
        for tenant_id in free:
            if len(self.managed) >= share or len(batch) >= room:
                break
            if tenant_id in self._handed_off and any(count < share for count in self._other_loads.values()):
                continue  # we just gave it away: let the host with room take it (unless that host is gone)
            acquired = await self._acquire(tenant_id)
            if acquired is None:
                continue
            if tenant_id in idle_tenants:
                self._keep_idle(self._take(acquired))  # e.g. its host died: keep it idle, and poll its bots here
            else:
                batch.append(self._take(acquired))
        self._start_many(batch)
        self._rebalance(active, share)

    def _rebalance(self, active: int, share: int) -> None:
        """Hand tenants to a living host with room when this one holds more than the even split.

        Without this a host that joins later (or comes back after a failover) would only ever get new tenants. A
        tenant is given up only when another host reports at least two fewer runtimes than this one and is below
        ``share`` (so it will take it), idle tenants first (nothing to stop); a running one is stopped gracefully,
        its lease released, and the other host starts it (its queued messages wait in the stream meanwhile). Given-up
        tenants are left alone here for a while so this host does not simply take them back.
        """
        if not self._other_loads or self._stopping.is_set():
            return
        even = math.ceil(active / self._live_hosts)
        least = min(self._other_loads.values())
        excess = min(len(self.managed) - even, len(self.managed) - least - 1, share - least)
        if excess <= 0:
            return
        movable = [m for m in self.managed.values() if m.state in ("idle", "running") and not m.lost]
        movable.sort(key=lambda m: (m.state != "idle", -m.idle_since))
        now = time.monotonic()
        for managed in movable[:excess]:
            running = managed.state == "running"
            if running:
                if now < self._next_rebalance:
                    return
                self._next_rebalance = now + self.cfg.rebalance_every
            self._handed_off[managed.tenant_id] = now + max(10.0, 3 * self.cfg.lease_ttl)
            log.info(
                "host.rebalance", extra={"tenant_id": managed.tenant_id, "state": managed.state, "to_least": least}
            )
            self._stop(managed, after="forget", final_state="stopped", reason="rebalanced to another host")
            if running:
                return  # one running tenant at a time

    def _keep_idle(self, managed: Managed) -> None:
        managed.state, managed.reason, managed.pid = "idle", "no traffic", 0
        managed.idle_since = time.time()
        self._actions.put_nowait(("stats", managed.tenant_id))

    async def _acquire(self, tenant_id: str) -> Lease | None:
        acquired = await leases.acquire(self.redis, tenant_id, self.host_id, self.cfg.lease_ttl_ms)
        if acquired is not None:
            log.info("host.lease.acquired", extra={"tenant_id": tenant_id, "token": acquired.token})
        return acquired

    async def _acquire_and_start(self, tenant_id: str) -> bool:
        acquired = await self._acquire(tenant_id)
        if acquired is None:
            return False
        self._start(self._take(acquired))
        return True

    def _take(self, acquired: Lease) -> Managed:
        managed = Managed(acquired.tenant_id, acquired)
        self.managed[acquired.tenant_id] = managed
        return managed

    async def _retry_crash_looping(self) -> None:
        now = time.time()
        for managed in list(self.managed.values()):
            if managed.state == "crash-looping" and now >= managed.retry_at:
                log.info("host.runtime.retry", extra={"tenant_id": managed.tenant_id, "level": managed.crash_level})
                self._restart_now(managed)

    # -- program control ----------------------------------------------------------------------------------------

    def _start(self, managed: Managed) -> None:
        self._start_many([managed])

    def _start_many(self, batch: list[Managed]) -> None:
        """Queue programs to start; ``_flush_starts`` spawns them as start slots free up."""
        for managed in batch:
            managed.state = "starting"
            managed.after_stop = ""
            managed.pid = 0
            managed.queued = True
            self._start_queue[managed.tenant_id] = managed

    def _start_slots(self) -> int:
        """How many more runtimes may start now (``max_starting`` minus those spawned and not ready yet)."""
        since = time.time() - self.cfg.start_slot_seconds
        starting = sum(
            1
            for managed in self.managed.values()
            if managed.state == "starting" and not managed.queued and managed.started_at > since
        )
        return self.cfg.max_starting - starting

    async def _flush_starts(self) -> None:
        """Spawn queued programs, as many as there are free start slots, with their XML-RPC calls off the loop."""
        for tenant_id, managed in list(self._start_queue.items()):
            if not managed.queued or self.managed.get(tenant_id) is not managed:
                del self._start_queue[tenant_id]
        room = min(self._start_slots(), self.cfg.start_batch, len(self._start_queue))
        if room <= 0:
            return
        batch = list(self._start_queue.values())[:room]
        plan = [(managed.tenant_id, managed.lease.token, managed.loaded) for managed in batch]
        try:
            results = await self._rpc(self._spawn, plan)
        except (OSError, xmlrpc.client.Error) as exc:
            log.warning("host.start.failed", extra={"runtimes": len(batch), "error": repr(exc)})
            return  # still queued: tried again on the next pass
        for managed in batch:
            self._start_queue.pop(managed.tenant_id, None)
            managed.queued = False
            loaded, pid, error = results[managed.tenant_id]
            managed.loaded = managed.loaded or loaded
            managed.pid = pid
            managed.started_at = time.time()
            if error:
                # Counted as an exit on the next tick (the process info says FATAL / the program is missing).
                managed.last_error = f"spawn failed: {error}"[:500]
                log.error("host.runtime.spawn_failed", extra={"tenant_id": managed.tenant_id, "error": error})
            log.info("host.runtime.started", extra={"tenant_id": managed.tenant_id, "pid": managed.pid})

    def _spawn(self, plan: list[tuple[str, int, bool]]) -> dict[str, tuple[bool, int, str]]:
        """On the supervisord thread: write new program files, then add and start each program without waiting on
        startsecs. Returns tenant id → (loaded, pid, error)."""
        for tenant_id, token, loaded in plan:
            if not loaded:
                self.supervisor.write_program(tenant_id, {"TENANT": tenant_id, "RUNTIME_LEASE_TOKEN": str(token)})
        results: dict[str, tuple[bool, int, str]] = {}
        for tenant_id, _token, loaded in plan:
            error = ""
            try:
                if not loaded:
                    self.supervisor.add_program(tenant_id)
                    loaded = True
                self.supervisor.start_process(program_name(tenant_id))
            except xmlrpc.client.Fault as fault:
                error = fault.faultString
            results[tenant_id] = (loaded, 0, error)
        info: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            info = self.supervisor.all_info()
        for tenant_id, (loaded, _pid, error) in results.items():
            item = info.get(program_name(tenant_id)) or {}
            results[tenant_id] = (loaded, int(item.get("pid") or 0), error)
        return results

    def _stop(self, managed: Managed, *, after: str, final_state: str, reason: str) -> None:
        if managed.queued:  # never spawned: just leave the queue
            managed.queued = False
            self._start_queue.pop(managed.tenant_id, None)
        managed.after_stop = "forget" if managed.lost else after
        managed.final_state = final_state
        managed.reason = reason
        log.info("host.runtime.stopping", extra={"tenant_id": managed.tenant_id, "reason": reason})
        if managed.loaded:
            self.supervisor.stop_process(managed.name)
            managed.state = "stopping"
        else:
            managed.state = "stopping"
            self._finish_stop(managed)

    def _unload(self, managed: Managed) -> bool:
        if managed.loaded and not self.supervisor.remove_program(managed.tenant_id):
            return False
        managed.loaded = False
        return True

    def _finish_stop(self, managed: Managed) -> None:
        if not self._unload(managed):
            return  # still running; look again next tick
        managed.pid = 0
        if managed.after_stop == "restart":
            managed.restarts += 1
            self._start(managed)
            return
        managed.state = managed.final_state
        self.managed.pop(managed.tenant_id, None)
        self._actions.put_nowait(("forget", managed))
        log.info("host.runtime.stopped", extra={"tenant_id": managed.tenant_id, "reason": managed.reason})

    # -- actions from listeners -------------------------------------------------------------------------------

    async def _drain_actions(self) -> None:
        while not self._actions.empty():
            kind, value = self._actions.get_nowait()
            try:
                if kind == "wake":
                    await self._wake(value)
                elif kind == "command":
                    await self._command(value)
                elif kind == "exited-clean":
                    await self._exited_clean(value)
                elif kind == "lease-lost":
                    if self.managed.get(value.tenant_id) is value and value.state != "stopping":
                        self._stop(value, after="forget", final_state="stopped", reason="lease lost")
                elif kind == "forget":
                    if not value.lost:
                        await leases.release(self.redis, value.lease)
                    await self._write_stats(value)
                elif kind == "stats" and value in self.managed:
                    await self._write_stats(self.managed[value])
            except (RedisError, OSError, xmlrpc.client.Error) as exc:
                log.warning("host.action.failed", extra={"action": kind, "error": repr(exc)})
            except Exception:
                # One bad command or tenant must not take the whole host down.
                log.exception("host.action.failed", extra={"action": kind})

    async def _exited_clean(self, tenant_id: str) -> None:
        managed = self.managed.get(tenant_id)
        if managed is None or managed.state != "exited":
            return
        if await self.redis.exists(contract.idle_key(tenant_id)):
            # Unloaded, but the lease stays ours: the idle poller long-polls its bots from here, and the wake-up
            # starts it here under the same fencing token.
            log.info("host.runtime.idle", extra={"tenant_id": tenant_id})
            self._unload(managed)
            self._keep_idle(managed)
        else:
            # A clean exit nobody asked for (SIGTERM from outside, or woken right as it went idle): run it again.
            self._restart_now(managed)

    async def _wake(self, tenant_id: str) -> None:
        managed = self.managed.get(tenant_id)
        if (managed is not None and managed.state != "idle") or not TENANT_ID.match(tenant_id):
            return
        if self._stopping.is_set():
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(contract.desired_runtimes_key(), tenant_id)
            pipe.exists(contract.hold_key(tenant_id))
            pipe.delete(contract.idle_key(tenant_id))
            desired, held, _ = await pipe.execute()
        if not desired or held:
            return  # the tick stops an idle one that is no longer wanted
        if managed is not None:
            self._start(managed)
            log.info("host.runtime.woken", extra={"tenant_id": tenant_id})
        elif await self._acquire_and_start(tenant_id):
            log.info("host.runtime.woken", extra={"tenant_id": tenant_id})

    async def _command(self, command: contract.HostCommand) -> None:
        if self._stopping.is_set():
            ok, message = False, "host is shutting down"
        else:
            ok, message = await self._execute(command)
        log.info(
            "host.command",
            extra={"command": command.command, "tenant_id": command.tenant_id, "ok": ok, "result": message},
        )
        if command.request_id:
            key = contract.control_reply_key(command.request_id)
            reply = json.dumps({"ok": ok, "message": message, "host_id": self.host_id})
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(key, reply)
                pipe.expire(key, REPLY_TTL)
                await pipe.execute()

    async def _execute(self, command: contract.HostCommand) -> tuple[bool, str]:
        tenant_id = command.tenant_id
        if not TENANT_ID.match(tenant_id):
            return False, "invalid tenant id"
        managed = self.managed.get(tenant_id)
        if command.command == "stop":
            await self.redis.set(contract.hold_key(tenant_id), f"{time.time():.3f}")
            if managed is None:
                return True, "held; it was not running on this host"
            if managed.state != "stopping":
                self._stop(managed, after="forget", final_state="stopped", reason="operator stop")
            return True, "stopping"
        if command.command == "start":
            await self.redis.delete(contract.hold_key(tenant_id), contract.idle_key(tenant_id))
            if managed is not None:
                if managed.state == "crash-looping":
                    managed.crash_level, managed.exits = 0, deque()
                    self._restart_now(managed)
                    return True, "restarted after crash-looping"
                if managed.state == "idle":
                    self._start(managed)
                    return True, "started (it was idle)"
                return True, f"already {managed.state}"
            if not await self.redis.sismember(contract.desired_runtimes_key(), tenant_id):
                return False, "tenant is not active (not in the desired set)"
            if await self._acquire_and_start(tenant_id):
                return True, "started"
            holder = await leases.holder(self.redis, tenant_id)
            return False, f"leased by {holder[0] if holder else 'nobody (try again)'}"
        if command.command == "restart":
            if managed is None:
                return False, "not running on this host"
            managed.crash_level, managed.exits = 0, deque()
            if managed.state in ("starting", "running"):
                self._stop(managed, after="restart", final_state="stopped", reason="operator restart")
            elif managed.state != "stopping":
                self._restart_now(managed)
            return True, "restarting"
        return False, f"unknown command {command.command!r}"

    async def _listen_pubsub(self) -> None:
        """Wake notices and log requests; a dropped connection is re-subscribed (the tick covers any gap)."""
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(contract.wake_channel(), contract.log_request_channel(self.host_id))
                while not self._stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    if message["channel"] == contract.wake_channel():
                        self.wake(str(message["data"]))
                    else:
                        task = asyncio.create_task(self._serve_logs(str(message["data"])))
                        self._background.add(task)
                        task.add_done_callback(self._background.discard)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("host.pubsub.error", extra={"error": repr(exc)})
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _run_service(self, module_name: str) -> None:
        """Run a host service; it is restarted after a crash, and cancelled when the agent stops."""
        service = importlib.import_module(module_name).host_service
        while not self._stopping.is_set():
            try:
                await service(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("host.service.failed", extra={"service": module_name})
                await asyncio.sleep(5)

    async def _listen_control(self) -> None:
        stream = contract.control_stream(self.host_id)
        try:
            await self.redis.xgroup_create(stream, CONTROL_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        start_id = "0"  # first our own unacked commands (from before a restart), then new ones
        while not self._stopping.is_set():
            try:
                response = await self.redis.xreadgroup(
                    CONTROL_GROUP, self.host_id, {stream: start_id}, count=20, block=1000
                )
                entries = [entry for _stream, items in (response or []) for entry in items]
                if start_id == "0" and not entries:
                    start_id = ">"
                    continue
                for entry_id, fields in entries:
                    await self.redis.xack(stream, CONTROL_GROUP, entry_id)
                    if not fields:
                        continue
                    try:
                        command = contract.HostCommand.from_fields(fields)
                    except (TypeError, ValueError, AssertionError):
                        log.warning("host.command.malformed", extra={"entry_id": entry_id})
                        continue
                    if command.at and time.time() - command.at > COMMAND_MAX_AGE:
                        log.info("host.command.stale", extra={"command": command.command})
                        continue
                    self._actions.put_nowait(("command", command))
                    self._kick.set()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("host.control.error", extra={"error": repr(exc)})
                await asyncio.sleep(1)

    async def _serve_logs(self, raw: str) -> None:
        try:
            request = contract.LogRequest.from_json(raw)
        except (TypeError, ValueError):
            return
        reply = contract.LogReply(request.request_id, request.tenant_id, self.host_id, request.stream)
        if not TENANT_ID.match(request.tenant_id) or request.stream not in ("stderr", "stdout"):
            reply.error = "invalid request"
        else:
            path = self.supervisor.log_file(request.tenant_id, request.stream)
            lines = max(1, min(int(request.lines), 1000))
            reply.lines = await asyncio.to_thread(tail_lines, path, lines)
            if not path.exists():
                reply.error = "no log on this host"
        key = contract.log_reply_key(request.request_id)
        with contextlib.suppress(RedisError, OSError):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(key, reply.to_json())
                pipe.expire(key, REPLY_TTL)
                await pipe.execute()

    # -- stats ------------------------------------------------------------------------------------------------

    async def _publish_stats(self) -> None:
        # Idle tenants' stats were written when they went idle and do not change; there may be many of them.
        await self._write_stats(*(managed for managed in self.managed.values() if managed.state != "idle"))

    async def _write_stats(self, *runtimes: Managed) -> None:
        """Write the runtimes' stats hashes, all in one round trip."""
        if not runtimes:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for managed in runtimes:
                alive = managed.pid and managed.state in ("starting", "running", "stopping") and pid_alive(managed.pid)
                uptime = time.time() - managed.started_at if alive and managed.started_at else 0.0
                key = contract.runtime_stats_key(managed.tenant_id)
                pipe.hset(
                    key,
                    mapping={
                        "tenant_id": managed.tenant_id,
                        "state": managed.state,
                        "host": self.host_id,
                        "pid": managed.pid if alive else 0,
                        "uptime": f"{uptime:.1f}",
                        "restarts": managed.restarts,
                        "rss": read_rss_bytes(managed.pid) if alive else 0,
                        "last_error": managed.last_error,
                        "exit_status": "" if managed.exit_status is None else managed.exit_status,
                        "next_retry_at": f"{managed.retry_at:.3f}" if managed.state == "crash-looping" else "",
                        "reason": managed.reason,
                        "updated_at": f"{time.time():.3f}",
                    },
                )
                pipe.expire(key, STATS_TTL)
                pipe.sadd(contract.runtimes_known_key(), managed.tenant_id)
            await pipe.execute()


class JsonFormatter(logging.Formatter):
    """The host's log lines: JSON with the host id (and tenant_id when the event concerns one runtime)."""

    _reserved = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def __init__(self, host_id: str) -> None:
        super().__init__()
        self.host_id = host_id

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "host_id": self.host_id,
            "tenant_id": None,
        }
        for name, value in record.__dict__.items():
            if name not in self._reserved and not name.startswith("_"):
                payload[name] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(host_id: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(host_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and a Bot API URL carries the bot's token (the idle poller's requests).
    for noisy in ("httpx", "httpcore", "telegram"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_host(config: HostConfig) -> int:
    """Run an agent in the foreground until SIGTERM/SIGINT; the process exit code."""
    configure_logging(config.host_id, os.environ.get("LOG_LEVEL", "INFO"))
    return asyncio.run(HostAgent(config).run())
