"""Who is calling: a Bearer access token (API) or a browser session cookie, with CSRF enforced for cookies.

Cookie-authenticated unsafe requests must carry the CSRF token, as the ``X-CSRF-Token`` header (API) or the
``csrf_token`` form field (HTML forms). Bearer calls need none: a browser never attaches them by itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from bot_runtime.i18n import N_
from control_plane.kit import security
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import Forbidden, NotAuthenticated
from control_plane.models import User, UserSession
from control_plane.settings import get_settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PLATFORM_ADMIN_SUBJECT = "platform-admin"


@dataclass(slots=True)
class Principal:
    """The authenticated caller. ``user`` is None only for the built-in ADMIN_PASSWORD admin."""

    user: User | None
    via: str  # bearer | cookie
    is_platform_admin: bool = False
    session_id: uuid.UUID | None = None


def csrf_seed(request: Request) -> str:
    """The per-browser random value CSRF tokens are bound to (set by the CSRF cookie middleware)."""
    return getattr(request.state, "csrf_seed", "") or request.cookies.get(get_settings().csrf_cookie_name, "")


async def check_csrf(request: Request) -> None:
    """Reject a cookie-authenticated unsafe request without a matching CSRF token."""
    if request.method in SAFE_METHODS:
        return
    candidate = request.headers.get("x-csrf-token")
    if candidate is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        candidate = value if isinstance(value, str) else None
    seed = csrf_seed(request)
    if not seed or not security.csrf_matches(seed, candidate):
        raise Forbidden(N_("The form expired or was sent from another site. Reload the page and try again."))


async def session_user(request: Request, db: SessionDep) -> tuple[User, uuid.UUID] | None:
    """The user behind the browser session cookie, when the session is live."""
    secret = request.cookies.get(get_settings().session_cookie_name)
    if not secret:
        return None
    row = await db.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.token_hash == security.token_hash(secret),
            UserSession.kind == "browser",
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > datetime.now(UTC),
            User.is_active.is_(True),
        )
    )
    found = row.first()
    return (found[1], found[0].id) if found else None


async def bearer_session(db: SessionDep, claims: dict[str, object], user_id: uuid.UUID) -> uuid.UUID | None:
    """The live refresh session a user access token is bound to (``sid``); a revoked one ends the token."""
    sid = claims.get("sid")
    if sid is None:
        return None
    try:
        session_id = uuid.UUID(str(sid))
    except ValueError as exc:
        raise NotAuthenticated() from exc
    row = await db.get(UserSession, session_id)
    if row is None or row.user_id != user_id or row.revoked_at is not None or row.expires_at <= datetime.now(UTC):
        raise NotAuthenticated(N_("Your sign-in has expired. Please sign in again."))
    return session_id


async def optional_principal(request: Request, db: SessionDep) -> Principal | None:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal: Principal | None = None
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        claims = security.decode_access_token(authorization[7:].strip())
        if claims is None:
            raise NotAuthenticated(N_("Your sign-in has expired. Please sign in again."))
        if claims.get("typ") == "admin" and claims.get("sub") == PLATFORM_ADMIN_SUBJECT:
            principal = Principal(user=None, via="bearer", is_platform_admin=True)
        elif claims.get("typ") in {"user", "admin"}:
            try:
                user = await db.get(User, uuid.UUID(str(claims["sub"])))
            except ValueError:
                user = None
            if user is None or not user.is_active:
                raise NotAuthenticated()
            session_id = await bearer_session(db, claims, user.id)
            is_admin = claims.get("typ") == "admin" and user.is_platform_admin
            principal = Principal(user=user, via="bearer", is_platform_admin=is_admin, session_id=session_id)
        else:
            raise NotAuthenticated()
    else:
        found = await session_user(request, db)
        if found is not None:
            user, session_id = found
            principal = Principal(
                user=user, via="cookie", is_platform_admin=user.is_platform_admin, session_id=session_id
            )
    if principal is not None and principal.via == "cookie":
        await check_csrf(request)
    request.state.principal = principal
    user = principal.user if principal else None
    request.state.user = user
    # A plain value for the layout's "please verify" banner: error pages render after the request's session has
    # rolled back and closed, when the user row itself can no longer be read.
    request.state.email_to_verify = user.email if user is not None and user.email_verified_at is None else None
    return principal


async def require_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise NotAuthenticated()
    return principal


async def require_user(principal: Annotated[Principal, Depends(require_principal)]) -> User:
    if principal.user is None:
        raise Forbidden()
    return principal.user


async def require_platform_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if not principal.is_platform_admin:
        raise Forbidden()
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
CurrentUser = Annotated[User, Depends(require_user)]
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]
