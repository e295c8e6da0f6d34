"""All SQL of the accounts feature, and the owner notifications other features send (tenant owners, deduplicated
notification rows)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import EmailToken, Notification, OutboxEmail, Role, Tenant, TenantMember, User, UserSession


async def user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == email.strip().lower()))


async def user_by_google_sub(db: AsyncSession, sub: str) -> User | None:
    return await db.scalar(select(User).where(User.google_sub == sub))


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


async def add_email_token(
    db: AsyncSession, *, user_id: uuid.UUID, purpose: str, hashed: str, expires_at: datetime
) -> EmailToken:
    row = EmailToken(user_id=user_id, purpose=purpose, token_hash=hashed, expires_at=expires_at)
    db.add(row)
    await db.flush()
    return row


async def live_email_token_for_update(db: AsyncSession, hashed: str, purpose: str) -> EmailToken | None:
    """The unused, unexpired token, locked: of two concurrent uses of one link, the second finds it used."""
    return await db.scalar(
        select(EmailToken)
        .where(
            EmailToken.token_hash == hashed,
            EmailToken.purpose == purpose,
            EmailToken.used_at.is_(None),
            EmailToken.expires_at > datetime.now(UTC),
        )
        .with_for_update()
    )


async def retire_email_tokens(db: AsyncSession, user_id: uuid.UUID, purpose: str) -> None:
    """Mark every unused token of this purpose as used, so only a newer link (if any) still works."""
    await db.execute(
        update(EmailToken)
        .where(EmailToken.user_id == user_id, EmailToken.purpose == purpose, EmailToken.used_at.is_(None))
        .values(used_at=datetime.now(UTC))
    )


async def recent_outbox(db: AsyncSession, *, limit: int) -> list[OutboxEmail]:
    """Mail kept for the development outbox page: never handed to SMTP (SMTP rows are delivery records)."""
    rows = await db.scalars(
        select(OutboxEmail)
        .where(OutboxEmail.sent_at.is_(None), OutboxEmail.next_attempt_at.is_(None), OutboxEmail.attempts == 0)
        .order_by(OutboxEmail.created_at.desc())
        .limit(limit)
    )
    return list(rows)


async def tenant_owners(db: AsyncSession, tenant_id: uuid.UUID) -> list[User]:
    """The tenant's active owners, earliest first: who is told when something of theirs breaks."""
    statement = (
        select(User)
        .join(TenantMember, TenantMember.user_id == User.id)
        .where(TenantMember.tenant_id == tenant_id, TenantMember.role == Role.owner.value, User.is_active.is_(True))
        .order_by(TenantMember.created_at)
    )
    return list(await db.scalars(statement))


async def add_notification_once(
    db: AsyncSession, *, tenant_id: uuid.UUID, user_id: uuid.UUID, kind: str, dedupe_key: str, payload: dict[str, Any]
) -> bool:
    """Insert the notification unless its dedupe key exists; True when this call inserted it (so: send it)."""
    statement = (
        insert(Notification)
        .values(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            user_id=user_id,
            kind=kind,
            dedupe_key=dedupe_key,
            channel="email",
            payload=payload,
        )
        .on_conflict_do_nothing(index_elements=[Notification.dedupe_key])
        .returning(Notification.id)
    )
    return (await db.scalar(statement)) is not None
