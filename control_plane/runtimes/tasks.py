"""Background job of the runtimes feature: publish what the after-commit path missed (every minute, jobs.schedule).

``publish_after_commit`` publishes from the web process right after commit. The job covers what that cannot:
requests left in ``runtime_config_outbox`` (the process died, Redis was down), config documents missing from Redis
(a Redis that lost data), and desired-runtime entries of tenants that no longer exist. It never republishes a
healthy tenant, so runtimes are not reloaded for nothing.
"""

from __future__ import annotations

import logging

from bot_runtime import contract
from control_plane.jobs.queue import run_async
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.redis import get_redis
from control_plane.runtimes import repository
from control_plane.runtimes.publish import drop_unknown_desired, publish_requested, sync_key_prefix

log = logging.getLogger("botfactory.runtimes.tasks")

# The after-commit publication normally finishes within milliseconds; only requests older than this are ours.
GRACE_SECONDS = 30.0
BATCH = 500


async def publish_pending_configs(*, grace_seconds: float = GRACE_SECONDS) -> dict[str, int]:
    """Publish stale outbox requests and missing documents; drop desired entries of deleted tenants. Returns counts."""
    sync_key_prefix()
    redis = get_redis()
    sessionmaker = get_sessionmaker()
    async with sessionmaker() as db:
        stale = await repository.stale_publications(db, older_than_seconds=grace_seconds, limit=BATCH)
        tenant_ids = await repository.list_tenant_ids(db)
    missing = []
    for start in range(0, len(tenant_ids), BATCH):
        chunk = tenant_ids[start : start + BATCH]
        async with redis.pipeline(transaction=False) as pipe:
            for tenant_id in chunk:
                pipe.exists(contract.config_key(str(tenant_id)))
            present = await pipe.execute()
        missing += [tenant_id for tenant_id, found in zip(chunk, present, strict=True) if not found]
    published = failed = 0
    for tenant_id in dict.fromkeys([*stale, *missing]):
        try:
            await publish_requested(tenant_id, redis=redis)
            published += 1
        except Exception:
            failed += 1
            log.exception("runtimes.publish_pending.failed", extra={"tenant_id": str(tenant_id)})
    removed = await drop_unknown_desired(redis, tenant_ids)
    counts = {"requests": len(stale), "missing": len(missing), "published": published, "failed": failed}
    counts["removed"] = removed
    if published or failed or removed:
        log.info("runtimes.publish_pending.done", extra=counts)
    return counts


@run_async
async def publish_pending() -> dict[str, int]:
    return await publish_pending_configs()
