"""The widget's reads: one bot by its public id, with what decides whether it may chat right now."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import Bot, Subscription, Tenant
from control_plane.runtimes.repository import latest_subscription


async def bot_by_public_id(db: AsyncSession, public_id: str) -> tuple[Bot, Tenant, Subscription | None] | None:
    """The bot, its tenant and the tenant's latest subscription.

    Deliberately unscoped: the public id is published in the embed code on the customer's website, and only
    public facts about the bot leave this feature (see ``service.widget_config``).
    """
    row = (
        await db.execute(select(Bot, Tenant).join(Tenant, Tenant.id == Bot.tenant_id).where(Bot.public_id == public_id))
    ).first()
    if row is None:
        return None
    bot, tenant = row
    return bot, tenant, await latest_subscription(db, tenant.id)
