"""The reads a tenant's runtime config is built from (tenant, bots, channel connections, latest subscription), and
the publication outbox (``runtime_config_outbox``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.models import Bot, ChannelConnection, RuntimeConfigOutbox, Subscription, Tenant


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


# -- publication outbox -----------------------------------------------------------------------------------------


def request_publication(session: Session, tenant_ids: set[str]) -> None:
    """Record, inside the caller's transaction, that these tenants' configs must be published.

    Synchronous on purpose: it runs in the session's ``before_commit`` hook. clock_timestamp(), not now(): now() is
    the transaction's start, so a long transaction committing after a short one would move the request backwards.
    """
    for tenant_id in sorted(tenant_ids):
        statement = insert(RuntimeConfigOutbox).values(
            tenant_id=uuid.UUID(tenant_id), requested_at=func.clock_timestamp()
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[RuntimeConfigOutbox.tenant_id],
                set_={"requested_at": func.greatest(RuntimeConfigOutbox.requested_at, statement.excluded.requested_at)},
            )
        )


async def publication_requested_at(db: AsyncSession, tenant_id: uuid.UUID) -> datetime | None:
    return await db.scalar(select(RuntimeConfigOutbox.requested_at).where(RuntimeConfigOutbox.tenant_id == tenant_id))


async def finish_publication(db: AsyncSession, tenant_id: uuid.UUID, seen: datetime) -> None:
    """Drop the request that was seen before publishing; a newer one (changed meanwhile) stays for its publisher."""
    await db.execute(
        delete(RuntimeConfigOutbox).where(
            RuntimeConfigOutbox.tenant_id == tenant_id, RuntimeConfigOutbox.requested_at == seen
        )
    )


async def stale_publications(db: AsyncSession, *, older_than_seconds: float, limit: int) -> list[uuid.UUID]:
    """Requests nobody finished within ``older_than_seconds`` (their after-commit publication was lost)."""
    cutoff = func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
    result = await db.scalars(
        select(RuntimeConfigOutbox.tenant_id)
        .where(RuntimeConfigOutbox.requested_at < cutoff)
        .order_by(RuntimeConfigOutbox.requested_at)
        .limit(limit)
    )
    return list(result)
