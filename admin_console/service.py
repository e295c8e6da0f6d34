"""Platform admin rules that change tenants: suspending a tenant stops its runtime, resuming starts it again."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.kit.errors import NotFound
from control_plane.models import AuditLog, Tenant
from control_plane.runtimes.publish import publish_after_commit

TENANT_STATUSES = ("active", "suspended")


async def set_tenant_status(
    db: AsyncSession, tenant_id: uuid.UUID, status: str, *, actor_user_id: uuid.UUID | None, ip: str
) -> Tenant:
    """Set ``status`` (active | suspended), audit it, and republish the tenant's config after commit.

    A suspended tenant's config says so and leaves the desired-runtimes set, so its host stops the runtime;
    Telegram webhooks are still acknowledged and their updates wait in the tenant's stream.
    """
    assert status in TENANT_STATUSES
    tenant = await db.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound()
    if tenant.status != status:
        previous = tenant.status
        tenant.status = status
        db.add(
            AuditLog(
                tenant_id=tenant.id,
                actor_user_id=actor_user_id,
                action="tenant.suspended" if status == "suspended" else "tenant.resumed",
                target_type="tenant",
                target_id=str(tenant.id),
                data={"from": previous, "to": status},
                ip=ip[:64],
            )
        )
        await db.flush()
        publish_after_commit(db, tenant.id)
    return tenant
