"""SQL of the admin console. These queries span every tenant on purpose: only platform admins reach them."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin_console.schemas import AdminAbuseEntryOut, AdminTenantOut
from control_plane.models import AbuseLogEntry, Bot, Role, Tenant, TenantMember, User


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _tenant_filter(statement: Select, query: str) -> Select:  # type: ignore[type-arg]
    if not query:
        return statement
    pattern = _like(query)
    by_member_email = (
        select(TenantMember.tenant_id)
        .join(User, User.id == TenantMember.user_id)
        .where(User.email.ilike(pattern, escape="\\"))
    )
    return statement.where(or_(Tenant.name.ilike(pattern, escape="\\"), Tenant.id.in_(by_member_email)))


async def list_tenants(db: AsyncSession, *, query: str, limit: int, offset: int) -> tuple[list[AdminTenantOut], int]:
    """Newest tenants first, with owner email and member/bot counts; ``query`` matches name or a member's email."""
    owner_email = (
        select(User.email)
        .join(TenantMember, TenantMember.user_id == User.id)
        .where(TenantMember.tenant_id == Tenant.id, TenantMember.role == Role.owner)
        .order_by(TenantMember.created_at)
        .limit(1)
        .scalar_subquery()
    )
    members = select(func.count()).where(TenantMember.tenant_id == Tenant.id).scalar_subquery()
    bots = select(func.count()).where(Bot.tenant_id == Tenant.id).scalar_subquery()
    statement = _tenant_filter(select(Tenant, owner_email, members, bots), query)
    rows = await db.execute(statement.order_by(Tenant.created_at.desc(), Tenant.id).limit(limit).offset(offset))
    items = [
        AdminTenantOut(
            id=tenant.id,
            name=tenant.name,
            plan=tenant.plan,
            status=tenant.status,
            timezone=tenant.timezone,
            trial_ends_at=tenant.trial_ends_at,
            created_at=tenant.created_at,
            owner_email=email,
            members=member_count or 0,
            bots=bot_count or 0,
        )
        for tenant, email, member_count, bot_count in rows.all()
    ]
    total = await db.scalar(_tenant_filter(select(func.count()).select_from(Tenant), query))
    return items, int(total or 0)


async def list_abuse_log(
    db: AsyncSession, *, tenant_id: uuid.UUID | None, limit: int, offset: int
) -> tuple[list[AdminAbuseEntryOut], int]:
    """Guardrail refusals of every tenant (or of ``tenant_id``), newest first, with tenant and bot names."""
    statement = (
        select(AbuseLogEntry, Tenant.name, Bot.name)
        .join(Tenant, Tenant.id == AbuseLogEntry.tenant_id)
        .join(Bot, Bot.id == AbuseLogEntry.bot_id)
    )
    counting = select(func.count()).select_from(AbuseLogEntry)
    if tenant_id is not None:
        statement = statement.where(AbuseLogEntry.tenant_id == tenant_id)
        counting = counting.where(AbuseLogEntry.tenant_id == tenant_id)
    rows = await db.execute(
        statement.order_by(AbuseLogEntry.created_at.desc(), AbuseLogEntry.id).limit(limit).offset(offset)
    )
    items = [
        AdminAbuseEntryOut(
            id=entry.id,
            tenant_id=entry.tenant_id,
            tenant_name=tenant_name,
            bot_id=entry.bot_id,
            bot_name=bot_name,
            channel=entry.channel,
            chat_external_id=entry.chat_external_id,
            direction=entry.direction,
            reason=entry.reason,
            matched=entry.matched,
            text=entry.text,
            created_at=entry.created_at,
        )
        for entry, tenant_name, bot_name in rows.all()
    ]
    return items, int(await db.scalar(counting) or 0)
