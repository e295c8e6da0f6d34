"""The runtimes console's SQL: tenant display names (one query per listing) and the audit rows of operator commands."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import AuditLog, Tenant


async def tenant_names(db: AsyncSession, tenant_ids: Iterable[str]) -> dict[str, str]:
    """Names keyed by the ids as given; ids that are not UUIDs (or whose tenant is gone) are simply absent."""
    by_uuid: dict[uuid.UUID, str] = {}
    for tenant_id in tenant_ids:
        try:
            by_uuid[uuid.UUID(tenant_id)] = tenant_id
        except ValueError:
            continue
    if not by_uuid:
        return {}
    rows = await db.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(by_uuid)))
    return {by_uuid[tenant_id]: name for tenant_id, name in rows.all()}


async def existing_tenant(db: AsyncSession, tenant_id: str) -> uuid.UUID | None:
    """The tenant's UUID when ``tenant_id`` names a tenant row (audit rows reference it), else None."""
    try:
        candidate = uuid.UUID(tenant_id)
    except ValueError:
        return None
    return await db.scalar(select(Tenant.id).where(Tenant.id == candidate))


def add_audit(
    db: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    actor_user_id: uuid.UUID | None,
    action: str,
    runtime: str,
    data: dict[str, Any],
    ip: str,
) -> None:
    db.add(
        AuditLog(
            tenant_id=tenant_id,
            actor_user_id=actor_user_id,
            action=action,
            target_type="runtime",
            target_id=runtime[:64],
            data=data,
            ip=ip[:64],
        )
    )
