"""Account emails (verification, password reset) sent through the configured mail sender."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.models import User


async def send_verification(db: AsyncSession, user: User) -> None:
    """Placeholder replaced by the accounts work: issues a verification token and mails the link."""
    return None
