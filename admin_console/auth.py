"""Who may use the admin pages: a browser holding the admin cookie, or a signed-in platform admin user.

The API side needs nothing extra: ``control_plane.accounts.auth.PlatformAdmin`` accepts a Bearer admin token (or a
platform admin's session cookie with CSRF). The pages add the admin cookie: the same short-lived admin JWT that
``POST /api/v1/admin/login`` returns, HttpOnly and SameSite=Strict, so the built-in admin (who has no user row and
so no session) can use the pages too. Console API routes that the pages' scripts call (runtimes) take
``ConsoleAdmin``, which accepts that cookie as well.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request, Response

from control_plane.accounts.auth import PLATFORM_ADMIN_SUBJECT, OptionalPrincipal, Principal, check_csrf
from control_plane.kit import security
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import Forbidden, NotAuthenticated
from control_plane.models import User
from control_plane.settings import get_settings


def admin_cookie_name() -> str:
    return get_settings().session_cookie_name + "_admin"


def set_admin_cookie(response: Response, token: str, expires_in: int) -> None:
    settings = get_settings()
    response.set_cookie(
        admin_cookie_name(),
        token,
        max_age=expires_in,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.https,
    )


def clear_admin_cookie(response: Response) -> None:
    settings = get_settings()
    response.delete_cookie(admin_cookie_name(), path="/", httponly=True, samesite="strict", secure=settings.https)


async def admin_page_principal(request: Request, db: SessionDep, principal: OptionalPrincipal) -> Principal | None:
    """The platform admin behind this browser, or None (the page then sends them to the admin sign-in)."""
    claims = security.decode_access_token(request.cookies.get(admin_cookie_name(), ""))
    if claims is not None and claims.get("typ") == "admin":
        subject = str(claims.get("sub"))
        if subject == PLATFORM_ADMIN_SUBJECT:
            return Principal(user=None, via="cookie", is_platform_admin=True)
        try:
            user = await db.get(User, uuid.UUID(subject))
        except ValueError:
            user = None
        # Re-checked on every request: revoking is_platform_admin takes effect at once.
        if user is not None and user.is_active and user.is_platform_admin:
            return Principal(user=user, via="cookie", is_platform_admin=True)
    if principal is not None and principal.is_platform_admin:
        return principal
    return None


AdminPagePrincipal = Annotated[Principal | None, Depends(admin_page_principal)]


async def console_admin(request: Request, db: SessionDep, principal: OptionalPrincipal) -> Principal:
    """A platform admin for console API routes the pages' own scripts call: what ``PlatformAdmin`` accepts (a Bearer
    admin token, a platform admin's session), or the admin cookie of the pages, with CSRF on unsafe methods."""
    if principal is not None and principal.via == "bearer":
        if not principal.is_platform_admin:
            raise Forbidden()
        return principal
    admin = await admin_page_principal(request, db, principal)
    if admin is None:
        if principal is None:
            raise NotAuthenticated()
        raise Forbidden()
    # A session principal passed CSRF already (optional_principal); the admin cookie has not.
    await check_csrf(request)
    return admin


ConsoleAdmin = Annotated[Principal, Depends(console_admin)]
