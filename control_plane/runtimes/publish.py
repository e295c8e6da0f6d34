"""Publishing tenant configs to Redis: the versioned document, the desired-runtimes set, and wake-ups.

``publish_tenant_config(db, tenant_id)`` rebuilds a tenant's ``TenantConfig`` from PostgreSQL (channel credentials
decrypted with ENCRYPTION_KEY and re-encrypted with RUNTIME_SECRET_KEY, so no plaintext token reaches Redis),
takes the next version from an INCR counter, and in one Lua script stores the document (only if it is newer than
the stored one: two racing publishers can never leave an older document behind), adds or removes the tenant in the
desired set, and announces ``"{tenant}:{version}"`` on the tenant's ``config_channel``. Runtimes reload on the
notice and also poll the counter, so a dropped notice only delays a reload by a few seconds.

Call it after the transaction that changed the tenant has committed (``publish_after_commit`` does exactly that),
or run ``botfactory runtimes sync`` to republish everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from billing.plans import plan_for
from bot_runtime import contract
from bot_runtime.contract import BotConfig, ChannelConfig, PlanLimits, TenantConfig
from bot_runtime.crypto import encrypt_json
from control_plane.kit.redis import get_redis
from control_plane.kit.security import decrypt
from control_plane.models import Bot, ChannelConnection, Subscription, Tenant
from control_plane.runtimes import repository
from control_plane.settings import get_settings

log = logging.getLogger(__name__)

# KEYS: config doc, desired set. ARGV: document, version, channel, tenant id, "1" when the runtime should run.
_PUBLISH = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and tonumber(doc['version']) and tonumber(doc['version']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[5] == '1' then redis.call('SADD', KEYS[2], ARGV[4]) else redis.call('SREM', KEYS[2], ARGV[4]) end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ':' .. ARGV[2])
return 1
"""

# KEYS: idle marker, lease. ARGV: wake channel, tenant id. Publishes when the runtime is idle or nobody runs it.
_WAKE = """
local was_idle = redis.call('DEL', KEYS[1])
if was_idle == 1 or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return 1
end
return 0
"""

# Subscription states in which the tenant keeps its runtime whatever the period end says (the provider's
# webhooks move the status; past_due is the dunning grace period).
_LIVE_SUBSCRIPTION = {"active", "trialing", "past_due"}


def sync_key_prefix() -> None:
    """contract.prefix() reads the environment; make it agree with settings that may come from ``.env``."""
    os.environ.setdefault("REDIS_KEY_PREFIX", get_settings().redis_key_prefix)


def runtime_status(tenant: Tenant, subscription: Subscription | None, now: datetime | None = None) -> str:
    """active | suspended | lapsed: whether the tenant's plan currently pays for a running bot.

    Suspension is the tenant's own status (admin or billing). Lapsed: the last subscription ended (canceled or
    expired past its period end), or there never was one and the trial is over. Billing work may refine this;
    it is the one place the runtime lifecycle asks.
    """
    if tenant.status != "active":
        return tenant.status
    now = now or datetime.now(UTC)
    if subscription is not None:
        if subscription.status in _LIVE_SUBSCRIPTION:
            return "active"
        end = subscription.current_period_end
        return "active" if end is not None and end > now else "lapsed"
    if tenant.trial_ends_at is not None and tenant.trial_ends_at <= now:
        return "lapsed"
    return "active"


def runtime_wanted(config: TenantConfig) -> bool:
    """The desired-set rule: the tenant is active and has at least one enabled bot."""
    return config.status == "active" and any(bot.is_enabled for bot in config.bots)


def _runtime_key() -> str:
    key = get_settings().runtime_secret_key
    if not key:
        raise RuntimeError("RUNTIME_SECRET_KEY is not set (make run generates one into .data/secrets)")
    return key


def _channel_credentials(connection: ChannelConnection, key: str) -> str:
    plaintext = decrypt(connection.credentials_encrypted)
    try:
        value = json.loads(plaintext)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        value = {"token": plaintext}  # a bare secret (e.g. a bot token) becomes {"token": ...}
    return encrypt_json(value, key=key)


def _providers(plan_tier: str, key: str) -> dict[str, str]:
    """The platform's AI provider settings, encrypted; empty means the runtime answers with the offline answerer."""
    settings = get_settings()
    providers: dict[str, str] = {}
    if settings.google_api_key:
        model = settings.gemini_pro_model if plan_tier == "pro" else settings.gemini_flash_model
        providers["gemini"] = encrypt_json(
            {
                "api_key": settings.google_api_key,
                "model": model,
                "flash_model": settings.gemini_flash_model,
                "embedding_model": settings.gemini_embedding_model,
                "base_url": settings.gemini_api_base_url,
            },
            key=key,
        )
    # An OpenAI-compatible model (Qwen) is an Enterprise choice, made per bot.
    if settings.openai_compat_api_key and plan_tier == "pro":
        providers["openai_compat"] = encrypt_json(
            {
                "api_key": settings.openai_compat_api_key,
                "model": settings.openai_compat_model,
                "base_url": settings.openai_compat_base_url,
            },
            key=key,
        )
    return providers


RUNTIME_CHANNEL_SETTINGS = frozenset({"mode", "username", "api_base_url", "bot_username", "phone_number_id"})


def _bot_config(bot: Bot, connections: list[ChannelConnection], artifact_version: int, key: str) -> BotConfig:
    channels = [
        ChannelConfig(
            kind=connection.kind,
            credentials=_channel_credentials(connection, key),
            settings={
                # Only what a runtime reads: the stored settings also hold the webhook secret and health notes.
                **{k: v for k, v in (connection.settings or {}).items() if k in RUNTIME_CHANNEL_SETTINGS},
                "status": connection.status,
                "external_id": connection.external_id,
                "display_name": connection.display_name,
            },
        )
        for connection in connections
    ]
    # Every bot has the website widget (every plan includes it); its look and origins ride along.
    channels.append(
        ChannelConfig(kind="widget", settings={**(bot.widget or {}), "allowed_origins": list(bot.allowed_origins)})
    )
    return BotConfig(
        id=str(bot.id),
        public_id=bot.public_id,
        name=bot.name,
        language=bot.language,
        instructions=bot.instructions,
        welcome_message=bot.welcome_message,
        fallback_message=bot.fallback_message,
        strict=bot.strict,
        is_enabled=bot.is_enabled,
        ai_provider=bot.ai_provider,
        artifact_version=artifact_version,
        channels=channels,
    )


async def build_tenant_config(
    db: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    artifact_versions: dict[str, int] | None = None,
    previous: TenantConfig | None = None,
) -> TenantConfig | None:
    """The tenant's config document from the database (version 0: publishing assigns it); None if it is gone.

    Knowledge artifact versions come from ``artifact_versions`` when given, else from the knowledge_artifacts rows,
    else they carry over from the previously published document.
    """
    tenant = await repository.get_tenant(db, tenant_id)
    if tenant is None:
        return None
    key = _runtime_key()
    subscription = await repository.latest_subscription(db, tenant_id)
    bots = await repository.list_bots(db, tenant_id)
    by_bot: dict[uuid.UUID, list[ChannelConnection]] = {}
    for connection in await repository.list_channel_connections(db, tenant_id):
        by_bot.setdefault(connection.bot_id, []).append(connection)
    # The knowledge_artifacts rows are the durable truth (a racing publish or a Redis loss must never roll a bot
    # back to an older artifact); the previous document only fills bots that have no row yet.
    from control_plane.knowledge.repository import artifact_versions as stored_artifact_versions

    carried = {bot.id: bot.artifact_version for bot in previous.bots} if previous else {}
    versions = {**carried, **await stored_artifact_versions(db, tenant_id), **(artifact_versions or {})}
    plan = plan_for(tenant.plan)
    return TenantConfig(
        tenant_id=str(tenant.id),
        version=0,
        status=runtime_status(tenant, subscription),
        plan=PlanLimits(
            code=plan.code,
            messages_per_day=plan.messages_per_day,
            model_tier=plan.model_tier,
            channels=sorted(plan.channels),
        ),
        bots=[_bot_config(bot, by_bot.get(bot.id, []), versions.get(str(bot.id), 0), key) for bot in bots],
        providers=_providers(plan.model_tier, key),
    )


async def publish_document(redis: Redis, config: TenantConfig, *, desired: bool | None = None) -> bool:
    """Give ``config`` the next version and store + announce it; True unless a newer document was already there.

    ``desired`` defaults to ``runtime_wanted(config)``.
    """
    sync_key_prefix()
    tenant_id = config.tenant_id
    config.version = int(await redis.incr(contract.config_version_key(tenant_id)))
    wanted = runtime_wanted(config) if desired is None else desired
    stored = await redis.eval(
        _PUBLISH,
        2,
        contract.config_key(tenant_id),
        contract.desired_runtimes_key(),
        config.to_json(),
        config.version,
        contract.config_channel(tenant_id),
        tenant_id,
        "1" if wanted else "0",
    )
    return bool(stored)


async def publish_tenant_config(
    db: AsyncSession,
    tenant_id: uuid.UUID | str,
    *,
    redis: Redis | None = None,
    artifact_versions: dict[str, int] | None = None,
) -> TenantConfig | None:
    """Rebuild, version, store and announce one tenant's config, and keep the desired set right.

    Returns the published document, or None when the tenant no longer exists (its runtime is then removed).
    """
    sync_key_prefix()
    redis = redis or get_redis()
    tenant_uuid = tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(str(tenant_id))
    raw = await redis.get(contract.config_key(str(tenant_uuid)))
    previous = TenantConfig.from_json(raw) if raw else None
    config = await build_tenant_config(db, tenant_uuid, artifact_versions=artifact_versions, previous=previous)
    if config is None:
        await remove_tenant(redis, str(tenant_uuid))
        return None
    await publish_document(redis, config)
    log.info("runtimes.config.published", extra={"tenant_id": config.tenant_id, "version": config.version})
    return config


async def remove_tenant(redis: Redis, tenant_id: str) -> None:
    """A deleted tenant: out of the desired set (its host stops the runtime) and its document gone."""
    sync_key_prefix()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.srem(contract.desired_runtimes_key(), tenant_id)
        pipe.delete(contract.config_key(tenant_id))
        await pipe.execute()


async def wake_tenant(redis: Redis, tenant_id: str) -> bool:
    """Call after XADDing to an idle tenant's inbound stream: clears the idle marker and, if the runtime was idle
    (or nobody runs it), announces the tenant on ``wake_channel`` so a host starts it now. Cheap enough to call on
    every inbound message; returns whether a wake-up was published."""
    sync_key_prefix()
    woke = await redis.eval(
        _WAKE, 2, contract.idle_key(tenant_id), contract.lease_key(tenant_id), contract.wake_channel(), tenant_id
    )
    return bool(woke)


async def sync_all(db: AsyncSession, *, redis: Redis | None = None) -> dict[str, int]:
    """Republish every tenant from PostgreSQL and drop desired entries of tenants that no longer exist."""
    sync_key_prefix()
    redis = redis or get_redis()
    tenant_ids = await repository.list_tenant_ids(db)
    published = desired = 0
    for tenant_id in tenant_ids:
        try:
            config = await publish_tenant_config(db, tenant_id, redis=redis)
        except Exception:
            # One broken tenant (e.g. undecryptable credentials) must not stop the others.
            log.exception("runtimes.sync.failed", extra={"tenant_id": str(tenant_id)})
            continue
        if config is not None:
            published += 1
            desired += runtime_wanted(config)
    removed = await drop_unknown_desired(redis, tenant_ids)
    return {"tenants": len(tenant_ids), "published": published, "desired": desired, "removed": removed}


async def drop_unknown_desired(redis: Redis, tenant_ids: list[uuid.UUID]) -> int:
    """Remove desired-runtime entries of tenants that no longer exist (their hosts then stop them); returns how many."""
    known = {str(tenant_id) for tenant_id in tenant_ids}
    members = {_text(member) for member in await redis.smembers(contract.desired_runtimes_key())}
    stale = sorted(members - known)
    if stale:
        await redis.srem(contract.desired_runtimes_key(), *stale)
    return len(stale)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------------------------
# Publishing after commit

_background: set[asyncio.Task[None]] = set()


def publish_after_commit(db: AsyncSession, tenant_id: uuid.UUID | str) -> None:
    """Publish the tenant's config once the session's transaction commits (nothing happens on rollback).

    The same transaction records the request in ``runtime_config_outbox``; the publication then runs in its own
    session as a background task and clears the request. If the process dies in between, or Redis is unreachable,
    the periodic job ``control_plane.runtimes.tasks.publish_pending`` publishes what is left.
    """
    sync = db.sync_session
    pending: set[str] = sync.info.setdefault("runtimes_publish", set())
    pending.add(str(tenant_id))
    if not sync.info.get("runtimes_publish_hooked"):
        sync.info["runtimes_publish_hooked"] = True
        event.listen(sync, "before_commit", _before_commit)
        event.listen(sync, "after_commit", _after_commit)
        event.listen(sync, "after_rollback", _after_rollback)


def _before_commit(session: Session) -> None:
    tenants = session.info.get("runtimes_publish")
    if tenants:
        repository.request_publication(session, tenants)


# SQLAlchemy fires after_commit / after_rollback for savepoints too (``begin_nested``), with the savepoint still the
# session's transaction: only the outermost transaction decides. A savepoint's rollback keeps the requests (an extra
# publication is harmless; dropping the outer transaction's would lose them, outbox row included), and a released
# savepoint publishes nothing yet (the outer transaction may still roll back, and a build now would miss its changes).


def _after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop("runtimes_publish", None)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    tenants = session.info.pop("runtimes_publish", set())
    if not tenants:
        return
    loop = asyncio.get_running_loop()
    for tenant_id in sorted(tenants):
        task = loop.create_task(_publish_in_own_session(tenant_id))
        _background.add(task)
        task.add_done_callback(_background.discard)


async def _publish_in_own_session(tenant_id: str) -> None:
    try:
        await publish_requested(tenant_id)
    except Exception:
        # The outbox row stays: the periodic job retries it.
        log.exception("runtimes.config.publish_failed", extra={"tenant_id": tenant_id})


async def publish_requested(tenant_id: uuid.UUID | str, *, redis: Redis | None = None) -> TenantConfig | None:
    """Publish a tenant's config and clear the outbox request seen before (a newer request stays for its publisher).

    The request is read before the config is built, in a new session: the build then sees every change committed
    up to that request, so clearing exactly that request never drops a change.
    """
    from control_plane.kit.db import get_sessionmaker

    tenant_uuid = tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(str(tenant_id))
    async with get_sessionmaker()() as db:
        seen = await repository.publication_requested_at(db, tenant_uuid)
        await db.rollback()  # a fresh snapshot for the build, taken after the request was read
        config = await publish_tenant_config(db, tenant_uuid, redis=redis)
        await db.rollback()  # the build's read locks are not held into the write below
        if seen is not None:
            await repository.finish_publication(db, tenant_uuid, seen)
            await db.commit()
    return config


async def wait_for_background_publishes() -> None:
    """Await publications started by ``publish_after_commit`` (tests, and graceful shutdown)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)
