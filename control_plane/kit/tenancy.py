"""Tenant scoping in one place: who the caller is inside a tenant, and statements limited to what they may read.

Repositories build every query for tenant-owned rows through ``scoped``; nobody filters by tenant_id by hand.
A user reaches a bot either as a member of its tenant or as a member of that one bot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Select, select

from control_plane.accounts.auth import CurrentUser
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import Forbidden, NotFound
from control_plane.kit.logging import tenant_id_var
from control_plane.models import Bot, BotMember, Role, Tenant, TenantMember

ModelT = TypeVar("ModelT")
ROLE_RANK = {Role.viewer: 0, Role.editor: 1, Role.owner: 2}


@dataclass(slots=True)
class TenantContext:
    """The caller inside their current tenant. ``role`` is None for users who only hold bot memberships."""

    user_id: uuid.UUID
    tenant: Tenant
    role: Role | None

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.tenant.id

    def require_role(self, minimum: Role) -> None:
        if self.role is None or ROLE_RANK[self.role] < ROLE_RANK[minimum]:
            raise Forbidden()


def scoped(statement: Select[Any], model: Any, ctx: TenantContext) -> Select[Any]:
    """Limit a statement on a tenant-owned model to the caller's tenant."""
    return statement.where(model.tenant_id == ctx.tenant_id)


def readable_bots(ctx: TenantContext) -> Select[tuple[Bot]]:
    """Bots the caller may see: all of the tenant's for tenant members, else those they are a member of."""
    statement = select(Bot).where(Bot.tenant_id == ctx.tenant_id)
    if ctx.role is None:
        statement = statement.where(Bot.id.in_(select(BotMember.bot_id).where(BotMember.user_id == ctx.user_id)))
    return statement


async def bot_role(db: SessionDep, ctx: TenantContext, bot: Bot) -> Role:
    """The caller's effective role on one bot (the higher of tenant role and bot membership)."""
    best = ctx.role
    member = await db.scalar(select(BotMember.role).where(BotMember.bot_id == bot.id, BotMember.user_id == ctx.user_id))
    if member is not None:
        candidate = Role(member)
        if best is None or ROLE_RANK[candidate] > ROLE_RANK[best]:
            best = candidate
    if best is None:
        raise NotFound()
    return best


async def get_bot(db: SessionDep, ctx: TenantContext, bot_id: uuid.UUID, *, minimum: Role = Role.viewer) -> Bot:
    """Load a bot the caller may access with at least ``minimum``; other tenants' bots are simply not found."""
    bot = await db.scalar(readable_bots(ctx).where(Bot.id == bot_id))
    if bot is None:
        raise NotFound()
    role = await bot_role(db, ctx, bot)
    if ROLE_RANK[role] < ROLE_RANK[minimum]:
        raise Forbidden()
    return bot


async def current_tenant(request: Request, user: CurrentUser, db: SessionDep) -> TenantContext:
    """The caller's tenant: the one named by X-Tenant-Id when they belong to it, else their first one."""
    wanted = request.headers.get("x-tenant-id")
    member_q = select(TenantMember, Tenant).join(Tenant, Tenant.id == TenantMember.tenant_id)
    member_q = member_q.where(TenantMember.user_id == user.id).order_by(TenantMember.created_at)
    rows = (await db.execute(member_q)).all()
    chosen: tuple[TenantMember, Tenant] | None = None
    if wanted:
        chosen = next(((m, t) for m, t in rows if str(t.id) == wanted), None)
        if chosen is None:
            raise Forbidden()
    elif rows:
        chosen = (rows[0][0], rows[0][1])
    if chosen is not None:
        ctx = TenantContext(user_id=user.id, tenant=chosen[1], role=Role(chosen[0].role))
    else:
        # Only bot memberships: the tenant is the one owning those bots.
        tenant = await db.scalar(
            select(Tenant)
            .join(BotMember, BotMember.tenant_id == Tenant.id)
            .where(BotMember.user_id == user.id)
            .limit(1)
        )
        if tenant is None:
            raise Forbidden()
        ctx = TenantContext(user_id=user.id, tenant=tenant, role=None)
    tenant_id_var.set(str(ctx.tenant_id))
    request.state.tenant = ctx.tenant
    return ctx


CurrentTenant = Annotated[TenantContext, Depends(current_tenant)]
__all__ = ["CurrentTenant", "TenantContext", "bot_role", "get_bot", "readable_bots", "scoped"]
