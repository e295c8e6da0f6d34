"""Background jobs of the channels feature: the Telegram webhook health check (every 10 minutes, see jobs.schedule).

The job loops over tenants with webhook-mode bots, one transaction per tenant, so one tenant's failure (a broken
row, an unexpected answer) never stops the rest.
"""

from __future__ import annotations

import logging

from control_plane.channels import repository, service
from control_plane.channels.repository import TELEGRAM
from control_plane.jobs.queue import run_async
from control_plane.kit.db import get_sessionmaker

log = logging.getLogger("botfactory.channels.tasks")


async def check_all_telegram_webhooks() -> dict[str, int]:
    """Check every webhook-mode Telegram bot (getWebhookInfo), update its status and tell owners about breakage.

    Returns counts: tenants checked, tenants failed, connections broken.
    """
    sessionmaker = get_sessionmaker()
    async with sessionmaker() as db:
        tenant_ids = await repository.tenants_with_webhooks(db, TELEGRAM)
    checked = failed = broken = 0
    for tenant_id in tenant_ids:
        try:
            async with sessionmaker() as db:
                broken += await service.check_tenant_telegram_webhooks(db, tenant_id)
                await db.commit()
            checked += 1
        except Exception:
            failed += 1
            log.exception("channels.telegram.health_failed", extra={"tenant_id": str(tenant_id)})
    log.info("channels.telegram.health_checked", extra={"tenants": checked, "failed": failed, "broken": broken})
    return {"checked": checked, "failed": failed, "broken": broken}


@run_async
async def check_telegram_webhooks() -> dict[str, int]:
    """Periodic job (RQ): :func:`check_all_telegram_webhooks` in its own event loop."""
    return await check_all_telegram_webhooks()
