"""Bot rules: who may create, change and delete bots, the plan limit, auditing and the runtime publish hook.

Services flush and never commit (the request owns the transaction). Functions that take a ``Bot`` expect it to have
been loaded through ``get_bot`` (or the dependencies in ``control_plane.bots.auth``) with the role they need.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from billing.limits import ensure_can_create_bot
from control_plane.bots import repository
from control_plane.bots.avatar import process_avatar
from control_plane.bots.events import publish_bot_change
from control_plane.bots.repository import StoredAvatar
from control_plane.bots.schemas import BotCreate, BotUpdate, WidgetSettings
from control_plane.jobs.queue import enqueue_after_commit
from control_plane.kit import tenancy
from control_plane.kit.tenancy import TenantContext
from control_plane.models import Bot, Role


async def list_bots(db: AsyncSession, ctx: TenantContext, *, limit: int = 20, offset: int = 0) -> tuple[list[Bot], int]:
    """The bots the caller may see (all of the tenant's, or only their own bot memberships) and the total."""
    return await repository.page(db, ctx, limit=limit, offset=offset)


async def get_bot(db: AsyncSession, ctx: TenantContext, bot_id: uuid.UUID, *, minimum: Role = Role.viewer) -> Bot:
    """A bot the caller may use with at least ``minimum``; other tenants' bots are not found."""
    return await tenancy.get_bot(db, ctx, bot_id, minimum=minimum)


async def create_bot(db: AsyncSession, ctx: TenantContext, data: BotCreate, *, ip: str = "") -> Bot:
    """Create a bot in the caller's tenant: editors and owners only, within the plan's bot limit."""
    ctx.require_role(Role.editor)
    await ensure_can_create_bot(db, ctx.tenant)
    widget = data.widget or WidgetSettings()
    bot = Bot(tenant_id=ctx.tenant_id, **data.model_dump(exclude={"widget"}), widget=widget.model_dump())
    repository.add(db, bot)
    await db.flush()
    repository.add_audit(db, ctx, "bot.created", bot, data={"name": bot.name}, ip=ip)
    await publish_bot_change(db, ctx.tenant_id, bot.id)
    return bot


async def update_bot(db: AsyncSession, ctx: TenantContext, bot: Bot, data: BotUpdate, *, ip: str = "") -> Bot:
    """Apply the fields that were sent; records which fields changed (not their values: persona texts are long)."""
    changed: list[str] = []
    for field, value in data.model_dump(exclude_unset=True, exclude={"widget"}).items():
        if getattr(bot, field) != value:
            setattr(bot, field, value)
            changed.append(field)
    if data.widget is not None:
        widget = data.widget.merged_into(bot.widget)
        if widget != bot.widget:
            bot.widget = widget  # a new dict: SQLAlchemy does not see in-place changes to a JSON column
            changed.append("widget")
    if changed:
        await db.flush()
        repository.add_audit(db, ctx, "bot.updated", bot, data={"fields": changed}, ip=ip)
        await publish_bot_change(db, ctx.tenant_id, bot.id)
    return bot


async def set_enabled(db: AsyncSession, ctx: TenantContext, bot: Bot, enabled: bool, *, ip: str = "") -> Bot:
    """Switch the bot on or off on every channel; doing what is already done changes nothing."""
    if bot.is_enabled != enabled:
        bot.is_enabled = enabled
        await db.flush()
        repository.add_audit(db, ctx, "bot.enabled" if enabled else "bot.disabled", bot, ip=ip)
        await publish_bot_change(db, ctx.tenant_id, bot.id)
    return bot


async def delete_bot(db: AsyncSession, ctx: TenantContext, bot: Bot, *, ip: str = "") -> None:
    """Delete the bot and everything that belongs to it. The caller must have loaded it with the owner role."""
    bot_id = bot.id
    repository.add_audit(db, ctx, "bot.deleted", bot, data={"name": bot.name}, ip=ip)
    await repository.delete(db, bot)
    await db.flush()
    await publish_bot_change(db, ctx.tenant_id, bot_id)
    from control_plane.knowledge.tasks import purge_bot_artifacts

    enqueue_after_commit(db, purge_bot_artifacts, str(bot_id), queue="ingestion")


async def set_avatar(db: AsyncSession, ctx: TenantContext, bot: Bot, raw: bytes, *, ip: str = "") -> Bot:
    """Replace the avatar with a checked, square, re-encoded copy of ``raw``; bumps the version for caches."""
    processed = await run_in_threadpool(process_avatar, raw)  # decoding is CPU work: keep it off the event loop
    bot.avatar = processed.data
    bot.avatar_mime = processed.mime
    bot.avatar_version = (bot.avatar_version or 0) + 1
    await db.flush()
    repository.add_audit(db, ctx, "bot.avatar.updated", bot, data={"version": bot.avatar_version}, ip=ip)
    await publish_bot_change(db, ctx.tenant_id, bot.id)
    return bot


async def remove_avatar(db: AsyncSession, ctx: TenantContext, bot: Bot, *, ip: str = "") -> Bot:
    if bot.avatar_mime is None:
        return bot
    bot.avatar = None
    bot.avatar_mime = None
    bot.avatar_version = (bot.avatar_version or 0) + 1
    await db.flush()
    repository.add_audit(db, ctx, "bot.avatar.removed", bot, ip=ip)
    await publish_bot_change(db, ctx.tenant_id, bot.id)
    return bot


async def get_avatar(db: AsyncSession, ctx: TenantContext, bot: Bot) -> StoredAvatar | None:
    return await repository.avatar(db, ctx, bot.id)


async def get_public_avatar(db: AsyncSession, public_id: str) -> StoredAvatar | None:
    """The avatar the widget shows; public by design (see ``repository.public_avatar``)."""
    if not public_id or len(public_id) > 40:
        return None
    return await repository.public_avatar(db, public_id)
