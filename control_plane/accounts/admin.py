"""Platform administrators: the ``create-admin`` command and the admin sign-in (ADMIN_PASSWORD or an admin user)."""

from __future__ import annotations

import hmac

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime.i18n import N_
from control_plane.accounts import service
from control_plane.accounts.auth import PLATFORM_ADMIN_SUBJECT
from control_plane.kit import ratelimit, security
from control_plane.kit.db import dispose_engine, get_sessionmaker
from control_plane.kit.errors import Forbidden, NotAuthenticated
from control_plane.models import User
from control_plane.settings import get_settings


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


async def _check_builtin_password(password: str, ip: str) -> None:
    """Compare against ADMIN_PASSWORD under the per-IP sign-in failure limit.

    Only the IP is limited: a per-account lock on the one built-in admin would let anyone lock the operator out.
    """
    await ratelimit.check_ip_login_allowed(ip)
    expected = get_settings().admin_password
    # An unset ADMIN_PASSWORD disables the built-in admin; compare anyway so timing says nothing.
    matches = hmac.compare_digest((expected or "\0unset").encode(), password.encode())
    if not expected or not matches:
        await ratelimit.record_ip_login_failure(ip)
        raise NotAuthenticated(N_("Wrong password."))


async def admin_sign_in(db: AsyncSession, *, password: str, email: str | None, ip: str) -> tuple[str, str, int]:
    """An admin access token for ADMIN_PASSWORD (the built-in admin) or for a platform admin's own credentials.

    Returns (subject, token, expires_in); the subject is ``platform-admin`` or the user's id.
    """
    if email:
        user = await service.authenticate(db, email=email, password=password, ip=ip)
        if not user.is_platform_admin:
            raise Forbidden()
        subject = str(user.id)
    else:
        await _check_builtin_password(password, ip)
        subject = PLATFORM_ADMIN_SUBJECT
    token, expires_in = security.create_access_token(subject, kind="admin")
    return subject, token, expires_in
