"""The hook through which bot changes reach the runtimes.

Every create, update, enable/disable, avatar change and delete calls ``publish_bot_change`` inside the request's
transaction; the tenant's config document is rebuilt and published to Redis once that transaction commits, so a
rolled-back change is never published. Publishing also updates the desired-runtimes set: the first enabled bot
starts the tenant's runtime, and disabling or deleting the last one stops it.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.runtimes.publish import publish_after_commit


async def publish_bot_change(db: AsyncSession, tenant_id: uuid.UUID, bot_id: uuid.UUID) -> None:
    """Republish ``tenant_id``'s runtime config after commit (``bot_id`` may be gone: that means unpublish)."""
    publish_after_commit(db, tenant_id)
