"""All SQL of the accounts feature."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import Tenant, TenantMember, User, UserSession


async def user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == email.strip().lower()))


async def live_session(db: AsyncSession, hashed: str, kind: str) -> UserSession | None:
    return await db.scalar(
        select(UserSession).where(
            UserSession.token_hash == hashed,
            UserSession.kind == kind,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > datetime.now(UTC),
        )
    )


async def revoke_sessions(db: AsyncSession, user_id: uuid.UUID, *, keep: uuid.UUID | None = None) -> None:
    statement = update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    if keep is not None:
        statement = statement.where(UserSession.id != keep)
    await db.execute(statement.values(revoked_at=datetime.now(UTC)))


async def memberships(db: AsyncSession, user_id: uuid.UUID) -> list[tuple[Tenant, str]]:
    rows = await db.execute(
        select(Tenant, TenantMember.role)
        .join(TenantMember, TenantMember.tenant_id == Tenant.id)
        .where(TenantMember.user_id == user_id)
        .order_by(TenantMember.created_at)
    )
    return [(tenant, role) for tenant, role in rows.all()]
