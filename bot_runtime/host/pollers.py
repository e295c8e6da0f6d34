"""The host's idle poller: long-polls the polling-mode Telegram bots of the tenants this host keeps idle, and wakes
a tenant's runtime on its first update. Every host agent runs it (``agent.DEFAULT_SERVICES``).

A runtime with no traffic for RUNTIME_IDLE_SECONDS stops its own pollers (an idle hook), exits, and its host keeps
the lease with the tenant in state ``idle`` (see :mod:`bot_runtime.host.agent`). From then on this service polls
each of the tenant's polling bots, one asyncio task per bot: a :class:`~bot_runtime.channels.poller.TelegramPoller`
with ``wake=True``, the token decrypted from the tenant's config with RUNTIME_SECRET_KEY. The first update goes the
runtime poller's way (XADD to the tenant stream, clearing the idle marker and announcing the wake-up in the same
MULTI, then the offset confirmed), the agent starts the runtime, and the tenant's host pollers stop: the runtime's
own pollers take over. A config change while idle (a bot connected, switched to polling, a new token) is picked up
within RUNTIME_CONFIG_POLL_SECONDS.

The hand-over, either way, loses and repeats nothing: a bot is polled only under its poll lock, so there is never
more than one getUpdates per token (Telegram answers 409 to a second one), and a poller stopped with a long poll in
flight keeps the lock until that poll has ended on the server; an update is confirmed to Telegram only after it is in
the stream, so whatever one poller fetched without confirming, the next fetches again; and the runtime processes
each event id once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from telegram import Bot
from telegram.request import HTTPXRequest

from bot_runtime import contract
from bot_runtime.channels.poller import (
    TelegramPoller,
    TokenRejected,
    api_base_url,
    poll_timeout_from_env,
    polling_channels,
)
from bot_runtime.crypto import SecretKeyError, decrypt_json

if TYPE_CHECKING:
    from bot_runtime.host.agent import HostAgent

log = logging.getLogger("bot_runtime.host.pollers")

SYNC_SECONDS = 0.25  # how soon a tenant that went idle (or woke up) is noticed; the agent's state is in memory
STOP_GRACE_SECONDS = 3.0


@dataclass(eq=False)
class BotPoll:
    """One bot of an idle tenant, polled by this host."""

    bot_id: str
    fingerprint: str  # of the token and server, to notice a change without keeping the token around
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    rejected: bool = False  # Telegram refused the token: wait for a config change


@dataclass(eq=False)
class IdleTenant:
    tenant_id: str
    idle_since: float  # from the agent: a tenant that woke and went idle again between two looks is a new one
    version: int = -1
    next_check: float = 0.0
    woken: bool = False  # an update arrived: no new polls until the agent has started the runtime
    bots: dict[str, BotPoll] = field(default_factory=dict)


class IdlePollers:
    """The service object: follows ``agent.idle_tenants()`` and keeps one poll task per polling bot of each."""

    def __init__(
        self,
        agent: HostAgent,
        *,
        poll_timeout: float | None = None,
        config_poll_seconds: float | None = None,
    ) -> None:
        self.agent = agent
        self.redis = agent.redis
        self.owner = f"host:{agent.host_id}:{os.getpid()}"  # prefixes its pollers' names in the bots' poll locks
        self.poll_timeout = poll_timeout_from_env() if poll_timeout is None else poll_timeout
        raw = os.environ.get("RUNTIME_CONFIG_POLL_SECONDS", "").strip()
        self.config_poll_seconds = config_poll_seconds if config_poll_seconds is not None else float(raw or 5.0)
        self.tenants: dict[str, IdleTenant] = {}
        # Polls of tenants that woke up or changed config: finishing the long poll in flight, then releasing the lock.
        self._retiring: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.sync()
                except (RedisError, OSError) as exc:
                    log.warning("host.poller.sync_failed", extra={"error": repr(exc)})
                    await asyncio.sleep(1)
                await asyncio.sleep(SYNC_SECONDS)
        finally:
            await self.close()

    async def sync(self) -> None:
        """Follow the agent: stop polling tenants that are no longer idle here, (re)load the configs that are due."""
        idle = self.agent.idle_tenants()
        for tenant_id, tenant in list(self.tenants.items()):
            if idle.get(tenant_id) != tenant.idle_since:
                self._retire(self.tenants.pop(tenant_id).bots.values())
        now = time.monotonic()
        due = [
            tenant_id
            for tenant_id in sorted(idle)
            if tenant_id not in self.tenants or self.tenants[tenant_id].next_check <= now
        ]
        if not due:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant_id in due:
                pipe.get(contract.config_version_key(tenant_id))
            counters = await pipe.execute()
        for tenant_id, counter in zip(due, counters, strict=True):
            tenant = self.tenants.get(tenant_id)
            if tenant is None:
                tenant = self.tenants[tenant_id] = IdleTenant(tenant_id, idle[tenant_id])
            tenant.next_check = now + self.config_poll_seconds
            if tenant.woken:
                continue
            changed = counter is not None and int(counter) > tenant.version
            if tenant.version < 0 or changed or any(self._ended(poll) for poll in tenant.bots.values()):
                try:
                    await self._load(tenant)
                except (RedisError, OSError):
                    raise
                except Exception:
                    # One tenant's unreadable document must not stop the others' polling; retried when it changes.
                    log.exception("host.poller.config_failed", extra={"tenant_id": tenant_id})
                    tenant.version = int(counter or 0)

    async def _load(self, tenant: IdleTenant) -> None:
        raw = await self.redis.get(contract.config_key(tenant.tenant_id))
        wanted: dict[str, contract.ChannelConfig] = {}
        if raw is not None:
            config = contract.TenantConfig.from_json(raw)
            tenant.version = config.version
            wanted = polling_channels(config)
        else:
            tenant.version = 0
        for bot_id, poll in list(tenant.bots.items()):
            channel = wanted.get(bot_id)
            if channel is None or self._fingerprint(channel) != poll.fingerprint or self._ended(poll):
                self._retire([tenant.bots.pop(bot_id)])
        for bot_id, channel in wanted.items():
            if bot_id not in tenant.bots:
                self._start(tenant, bot_id, channel)

    def _fingerprint(self, channel: contract.ChannelConfig) -> str:
        # The encrypted credentials change with the token (Fernet tokens are never reused), so no decryption here.
        return hashlib.sha256(f"{channel.credentials}|{api_base_url(channel)}".encode()).hexdigest()

    def _start(self, tenant: IdleTenant, bot_id: str, channel: contract.ChannelConfig) -> None:
        poll = BotPoll(bot_id, self._fingerprint(channel))
        tenant.bots[bot_id] = poll
        try:
            token = str(decrypt_json(channel.credentials).get("token") or "")
        except (SecretKeyError, ValueError):
            log.error("host.poller.credentials_unreadable", extra={"tenant_id": tenant.tenant_id, "bot_id": bot_id})
            poll.rejected = True
            return
        if not token:
            poll.rejected = True
            return
        base = api_base_url(channel)
        # One small HTTP client per bot: it only ever carries that bot's getUpdates, one at a time.
        request = HTTPXRequest(connection_pool_size=1)
        bot = Bot(
            token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=request,
            get_updates_request=request,
        )
        poller = TelegramPoller(
            bot,
            tenant_id=tenant.tenant_id,
            bot_id=bot_id,
            redis=self.redis,
            timeout=self.poll_timeout,
            wake=True,
            owner=self.owner,
        )
        poll.task = asyncio.create_task(self._poll(tenant, poll, poller, request), name=f"idle-poller {bot_id}")

    async def _poll(self, tenant: IdleTenant, poll: BotPoll, poller: TelegramPoller, request: HTTPXRequest) -> None:
        log.info("host.poller.started", extra={"tenant_id": tenant.tenant_id, "bot_id": poll.bot_id})
        try:
            await poller.run(poll.stop, hand_over=True)
            if poller.queued:
                # The batch is in the stream and confirmed, the idle marker gone and the wake-up announced (one
                # MULTI); stop the tenant's other polls and start its runtime here without waiting for pub/sub.
                log.info("host.poller.woke", extra={"tenant_id": tenant.tenant_id, "bot_id": poll.bot_id})
                tenant.woken = True
                for other in tenant.bots.values():
                    other.stop.set()
                self.agent.wake(tenant.tenant_id)
        except TokenRejected:
            poll.rejected = True
        except Exception:
            log.exception("host.poller.failed", extra={"tenant_id": tenant.tenant_id, "bot_id": poll.bot_id})
        finally:
            with contextlib.suppress(Exception):
                await request.shutdown()

    @staticmethod
    def _ended(poll: BotPoll) -> bool:
        """A poll task that ended on an unexpected error: started again at the config-check pace."""
        return poll.task is not None and poll.task.done() and not poll.rejected and not poll.stop.is_set()

    def _retire(self, polls: Iterable[BotPoll]) -> None:
        for poll in polls:
            poll.stop.set()  # the poll in flight ends within the poll timeout, then the lock is released
            if poll.task is not None and not poll.task.done():
                self._retiring.add(poll.task)
                poll.task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Stop every poll (the agent is shutting down): abandoned long polls keep their lock until they end."""
        tasks = [poll.task for tenant in self.tenants.values() for poll in tenant.bots.values() if poll.task]
        tasks += list(self._retiring)
        self.tenants.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)


async def host_service(agent: HostAgent) -> None:
    """The agent's entry point for this service (see ``HostConfig.services``)."""
    await IdlePollers(agent).run()
