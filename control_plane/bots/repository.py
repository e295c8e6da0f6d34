"""All SQL of the bots feature. Tenant scoping comes from ``control_plane.kit.tenancy``, never from hand filters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.kit.tenancy import TenantContext, readable_bots, scoped
from control_plane.models import AuditLog, Bot


@dataclass(frozen=True, slots=True)
class StoredAvatar:
    data: bytes
    mime: str
    version: int
    public_id: str


async def page(db: AsyncSession, ctx: TenantContext, *, limit: int, offset: int) -> tuple[list[Bot], int]:
    """One page of the bots the caller may see, newest first, and how many there are in all."""
    readable = readable_bots(ctx)
    total = await db.scalar(select(func.count()).select_from(readable.subquery()))
    rows = await db.scalars(readable.order_by(Bot.created_at.desc(), Bot.id).limit(limit).offset(offset))
    return list(rows), int(total or 0)


def add(db: AsyncSession, bot: Bot) -> None:
    db.add(bot)


async def delete(db: AsyncSession, bot: Bot) -> None:
    # Everything hanging off the bot (members, channels, knowledge, conversations) goes by ON DELETE CASCADE.
    await db.delete(bot)


async def avatar(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID) -> StoredAvatar | None:
    """The stored avatar of one of the caller's tenant's bots (the bytes are a deferred column, loaded only here)."""
    statement = scoped(select(Bot.avatar, Bot.avatar_mime, Bot.avatar_version, Bot.public_id), Bot, ctx)
    row = (await db.execute(statement.where(Bot.id == bot_id))).first()
    if row is None or row.avatar is None or not row.avatar_mime:
        return None
    return StoredAvatar(row.avatar, row.avatar_mime, row.avatar_version, row.public_id)


async def public_avatar(db: AsyncSession, public_id: str) -> StoredAvatar | None:
    """An avatar by the bot's public id, for the widget on the customer's website.

    Deliberately unscoped: the public id is published in the widget's embed code, and the avatar is shown to
    every visitor of that website anyway.
    """
    statement = select(Bot.avatar, Bot.avatar_mime, Bot.avatar_version, Bot.public_id).where(Bot.public_id == public_id)
    row = (await db.execute(statement)).first()
    if row is None or row.avatar is None or not row.avatar_mime:
        return None
    return StoredAvatar(row.avatar, row.avatar_mime, row.avatar_version, row.public_id)


def add_audit(
    db: AsyncSession, ctx: TenantContext, action: str, bot: Bot, *, data: dict[str, Any] | None = None, ip: str = ""
) -> None:
    db.add(
        AuditLog(
            tenant_id=ctx.tenant_id,
            actor_user_id=ctx.user_id,
            action=action,
            target_type="bot",
            target_id=str(bot.id),
            data=data or {},
            ip=ip[:64],
        )
    )
