"""Plan limits, checked in this one place: every "may this tenant have one more X" question is answered here.

The numbers come from ``billing.plans`` (limits as data); this module counts what the tenant already has and
refuses with a translated error. Billing work adds more checks here (messages per day, channels) rather than
sprinkling plan lookups through the features.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.plans import plan_for
from bot_runtime.i18n import N_
from control_plane.kit.errors import AppError
from control_plane.models import Bot, Tenant


class PlanLimitReached(AppError):
    """The tenant's plan does not allow one more of something; upgrading the plan lifts the limit."""

    status_code = 402
    code = "plan_limit"
    message = N_("Your plan does not allow more of this. Upgrade your plan to continue.")


class TenantSuspended(AppError):
    """A suspended tenant (unpaid, or stopped by a platform admin) keeps its data but cannot grow it."""

    status_code = 403
    code = "tenant_suspended"
    message = N_("This workspace is suspended. Renew your plan to make changes.")


def bot_limit_reached(limit: int) -> PlanLimitReached:
    return PlanLimitReached(
        N_("You have reached the number of bots your plan allows (%(limit)s). Upgrade your plan to create more."),
        params={"limit": limit},
    )


@dataclass(frozen=True, slots=True)
class Quota:
    """How much of one limit a tenant uses; ``limit`` None means unlimited."""

    used: int
    limit: int | None

    @property
    def reached(self) -> bool:
        return self.limit is not None and self.used >= self.limit


async def _count_bots(db: AsyncSession, tenant: Tenant) -> int:
    # Tenant-wide on purpose, whatever the caller may see: the plan limits the tenant, not one member.
    return int(await db.scalar(select(func.count()).select_from(Bot).where(Bot.tenant_id == tenant.id)) or 0)


async def bot_quota(db: AsyncSession, tenant: Tenant) -> Quota:
    """Bots the tenant has against its plan's ``max_bots`` (for display; creation goes through the check below)."""
    return Quota(used=await _count_bots(db, tenant), limit=plan_for(tenant.plan).max_bots)


async def ensure_can_create_bot(db: AsyncSession, tenant: Tenant) -> None:
    """Refuse a new bot when the tenant is suspended or already has as many bots as its plan allows.

    The tenant row is locked until the transaction ends, so two concurrent creations cannot both squeeze in under
    the limit; the plan and status are read from the locked row, not from the possibly stale ``tenant`` object.
    """
    row = (await db.execute(select(Tenant.plan, Tenant.status).where(Tenant.id == tenant.id).with_for_update())).one()
    if row.status == "suspended":
        raise TenantSuspended()
    max_bots = plan_for(row.plan).max_bots
    if max_bots is None:
        return
    if await _count_bots(db, tenant) >= max_bots:
        raise bot_limit_reached(max_bots)
