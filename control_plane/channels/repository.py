"""All SQL of the channels feature.

Owner-facing queries go through ``kit.tenancy.scoped``. Three lookups are deliberately not scoped to a caller, and
say why: the token fingerprint (a token may serve one bot in the whole platform), the webhook target (Telegram is
the caller; the secret header proves it) and the health job (it loops over tenants itself).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.kit.tenancy import TenantContext, scoped
from control_plane.models import Bot, ChannelConnection

TELEGRAM = "telegram"


async def connection(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, kind: str) -> ChannelConnection | None:
    """The bot's connection of ``kind`` in the caller's tenant."""
    statement = scoped(select(ChannelConnection), ChannelConnection, ctx)
    return await db.scalar(statement.where(ChannelConnection.bot_id == bot_id, ChannelConnection.kind == kind))


async def by_fingerprint(db: AsyncSession, kind: str, fingerprint: str) -> ChannelConnection | None:
    """Whoever holds this credential, in any tenant: the unique (kind, fingerprint) constraint is platform-wide."""
    return await db.scalar(
        select(ChannelConnection).where(
            ChannelConnection.kind == kind, ChannelConnection.credential_fingerprint == fingerprint
        )
    )


async def webhook_target(db: AsyncSession, bot_id: uuid.UUID, kind: str) -> ChannelConnection | None:
    """The connection a webhook call names. Unscoped: the messenger is the caller, its secret header the proof."""
    return await db.scalar(
        select(ChannelConnection).where(ChannelConnection.bot_id == bot_id, ChannelConnection.kind == kind)
    )


def add(db: AsyncSession, connection: ChannelConnection) -> None:
    db.add(connection)


async def delete(db: AsyncSession, connection: ChannelConnection) -> None:
    await db.delete(connection)


# -- the health job (no caller: the job names the tenant) ------------------------------------------------------------


async def tenants_with_webhooks(db: AsyncSession, kind: str) -> list[uuid.UUID]:
    statement = (
        select(ChannelConnection.tenant_id)
        .where(ChannelConnection.kind == kind, ChannelConnection.settings["mode"].astext == "webhook")
        .distinct()
    )
    return list(await db.scalars(statement))


async def webhook_connections(db: AsyncSession, tenant_id: uuid.UUID, kind: str) -> list[tuple[ChannelConnection, Bot]]:
    statement = (
        select(ChannelConnection, Bot)
        .join(Bot, Bot.id == ChannelConnection.bot_id)
        .where(
            ChannelConnection.tenant_id == tenant_id,
            ChannelConnection.kind == kind,
            ChannelConnection.settings["mode"].astext == "webhook",
        )
        .order_by(ChannelConnection.created_at)
    )
    return [(row[0], row[1]) for row in (await db.execute(statement)).all()]
