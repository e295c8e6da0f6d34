"""The reads a tenant's runtime config is built from (tenant, bots, channel connections, latest subscription)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import Bot, ChannelConnection, Subscription, Tenant


async def get_tenant(db: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await db.get(Tenant, tenant_id)


async def list_bots(db: AsyncSession, tenant_id: uuid.UUID) -> list[Bot]:
    result = await db.scalars(select(Bot).where(Bot.tenant_id == tenant_id).order_by(Bot.created_at, Bot.id))
    return list(result)


async def list_channel_connections(db: AsyncSession, tenant_id: uuid.UUID) -> list[ChannelConnection]:
    result = await db.scalars(
        select(ChannelConnection)
        .where(ChannelConnection.tenant_id == tenant_id)
        .order_by(ChannelConnection.created_at, ChannelConnection.id)
    )
    return list(result)


async def latest_subscription(db: AsyncSession, tenant_id: uuid.UUID) -> Subscription | None:
    return await db.scalar(
        select(Subscription)
        .where(Subscription.tenant_id == tenant_id)
        .order_by(Subscription.created_at.desc(), Subscription.id)
        .limit(1)
    )


async def list_tenant_ids(db: AsyncSession) -> list[uuid.UUID]:
    return list(await db.scalars(select(Tenant.id).order_by(Tenant.id)))
