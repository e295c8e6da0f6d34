"""Platform administrators: the ``create-admin`` command and the ADMIN_PASSWORD sign-in."""

from __future__ import annotations

from sqlalchemy import update

from control_plane.kit.db import dispose_engine, get_sessionmaker
from control_plane.models import User


async def make_platform_admin(email: str) -> bool:
    """Mark the user with ``email`` as platform admin; False when no such user exists."""
    try:
        async with get_sessionmaker()() as db:
            result = await db.execute(
                update(User).where(User.email == email.strip().lower()).values(is_platform_admin=True)
            )
            await db.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]
    finally:
        await dispose_engine()
