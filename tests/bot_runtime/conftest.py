"""Fixtures for the runtime and host tests: a decoded Redis client, config publishing, and real processes.

Runtimes and host agents run as real subprocesses (real supervisord, real Redis). ``procs`` owns every process a
test starts and cleans up even when the test fails: agents get SIGTERM (then SIGKILL), each agent's supervisord
is killed by the pid in its state dir, and any runtime still serving one of the test's tenants is killed by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot_runtime import contract

ROOT = Path(__file__).resolve().parents[2]

# Short timings so failover, claims and reloads happen within a test's patience.
FAST_ENV = {
    "RUNTIME_LEASE_TTL": "3",
    "RUNTIME_HOST_TICK": "0.5",
    "RUNTIME_HOST_STATS_SECONDS": "1",
    "RUNTIME_CONFIG_POLL_SECONDS": "1",
    "RUNTIME_CLAIM_IDLE_MS": "1000",
    "RUNTIME_CLAIM_EVERY_SECONDS": "0.5",
    "RUNTIME_IDLE_SECONDS": "0",
    "LOG_LEVEL": "INFO",
}


def new_tenant_id() -> str:
    return "t" + secrets.token_hex(6)


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, within: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def runtime_pids(tenant_ids: set[str]) -> list[int]:
    """Pids of ``python -m bot_runtime --tenant X`` processes for the given tenants (this test's only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"bot_runtime" in argv and b"--tenant" in argv:
                tenant = argv[argv.index(b"--tenant") + 1].decode()
                if tenant in tenant_ids and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def bot(bot_id: str = "b1") -> contract.BotConfig:
    return contract.BotConfig(id=bot_id, public_id=f"p_{bot_id}", name="Test bot")


async def publish(
    redis: Redis,
    tenant_id: str,
    *,
    bots: list[contract.BotConfig] | None = None,
    messages_per_day: int | None = 100,
) -> contract.TenantConfig:
    """Publish a config document through the control plane's publisher (versioned, announced, desired)."""
    from control_plane.runtimes.publish import publish_document

    config = contract.TenantConfig(
        tenant_id=tenant_id,
        version=0,
        plan=contract.PlanLimits(messages_per_day=messages_per_day),
        bots=bots if bots is not None else [bot()],
    )
    assert await publish_document(redis, config)
    return config


async def queue_echo(
    redis: Redis, tenant_id: str, event_id: str, *, text: str = "", delay: float = 0, **payload: Any
) -> str:
    event = contract.InboundEvent(
        event_id=event_id,
        bot_id="b1",
        kind="test.echo",
        payload={"text": text or event_id, "delay": delay, **payload},
        received_at=time.time(),
    )
    return await redis.xadd(contract.inbound_stream(tenant_id), event.to_fields())


async def outbox(redis: Redis, tenant_id: str) -> list[dict[str, str]]:
    return [fields for _id, fields in await redis.xrange(contract.outbox_stream(tenant_id))]


@dataclass
class HostProcess:
    host_id: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def supervisord_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.state_dir / "supervisord.pid").read_text().strip())
        return None

    def program_file(self, tenant_id: str) -> Path:
        return self.state_dir / "conf.d" / f"runtime-{tenant_id}.conf"

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-6000:]
        return ""


@dataclass
class Processes:
    """Every process a test started, and the tenants whose runtimes it may have spawned."""

    tmp_path: Path
    hosts: list[HostProcess] = field(default_factory=list)
    runtimes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tenants: set[str] = field(default_factory=set)

    def new_tenant(self) -> str:
        """A fresh tenant id whose runtimes this fixture will clean up."""
        tenant_id = new_tenant_id()
        self.tenants.add(tenant_id)
        return tenant_id

    def start_host(self, host_id: str, **env: str) -> HostProcess:
        state_dir = self.tmp_path / host_id
        log_path = self.tmp_path / f"{host_id}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "control_plane.cli", "runtime-host", "--host-id", host_id, "--state-dir", state_dir],
            cwd=ROOT,
            env={**os.environ, **FAST_ENV, **env},
            stdin=subprocess.DEVNULL,
            stdout=open(log_path, "ab"),  # the child keeps its own copy
            stderr=subprocess.STDOUT,
        )
        host = HostProcess(host_id, state_dir, process, log_path)
        self.hosts.append(host)
        return host

    def start_runtime(self, tenant_id: str, *, token: int = 1, name: str = "rt", **env: str) -> subprocess.Popen[bytes]:
        self.tenants.add(tenant_id)
        log_path = self.tmp_path / f"{name}-{tenant_id}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "bot_runtime", "--tenant", tenant_id],
            cwd=ROOT,
            env={
                **os.environ,
                **FAST_ENV,
                "RUNTIME_HOST_ID": "testhost",
                "RUNTIME_LEASE_TOKEN": str(token),
                **env,
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(log_path, "ab"),  # the child keeps its own copy
        )
        self.runtimes.append(process)
        return process

    def runtime_log(self, tenant_id: str, name: str = "rt") -> str:
        with contextlib.suppress(OSError):
            return (self.tmp_path / f"{name}-{tenant_id}.log").read_text()
        return ""

    def cleanup(self) -> None:
        for host in self.hosts:
            if host.process.poll() is None:
                host.process.send_signal(signal.SIGTERM)
        for host in self.hosts:
            try:
                host.process.wait(15)
            except subprocess.TimeoutExpired:
                host.process.kill()
                host.process.wait(5)
            pid = host.supervisord_pid
            if pid and pid_alive(pid):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(host.state_dir).encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)
        for process in self.runtimes:
            if process.poll() is None:
                process.kill()
            process.wait(5)
        deadline = time.monotonic() + 5
        while runtime_pids(self.tenants) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in runtime_pids(self.tenants):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True, socket_timeout=15)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.cleanup()
