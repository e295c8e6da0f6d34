"""Accounts REST API: register, login, refresh, logout, me."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from control_plane.accounts import repository, service
from control_plane.accounts.auth import CurrentPrincipal, CurrentUser
from control_plane.accounts.schemas import LoginIn, LogoutIn, MeOut, RefreshIn, RegisterIn, TenantOut, TokenOut
from control_plane.kit import ratelimit
from control_plane.kit.db import SessionDep
from control_plane.kit.pages import client_ip
from control_plane.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["accounts"])


async def me_out(db: SessionDep, user: CurrentUser) -> MeOut:
    tenants = [
        TenantOut.model_validate(tenant).model_copy(update={"role": role})
        for tenant, role in await repository.memberships(db, user.id)
    ]
    return MeOut(
        id=user.id,
        email=user.email,
        name=user.name,
        language=user.language,
        timezone=user.timezone,
        email_verified=user.email_verified_at is not None,
        is_platform_admin=user.is_platform_admin,
        created_at=user.created_at,
        tenants=tenants,
    )


@router.post("/auth/register", status_code=201)
async def register(body: RegisterIn, request: Request, db: SessionDep) -> MeOut:
    """Create an account and its own workspace on the 14-day free trial. Sign-in works before email verification."""
    settings = get_settings()
    await ratelimit.enforce(
        "register-ip",
        client_ip(request),
        limit=settings.register_limit_per_ip,
        window_seconds=settings.register_window_seconds,
    )
    user = await service.register(db, email=body.email, password=body.password, name=body.name, language=body.language)
    from control_plane.accounts import emails

    await emails.send_verification(db, user)
    return await me_out(db, user)


@router.post("/auth/login")
async def login(body: LoginIn, request: Request, db: SessionDep) -> TokenOut:
    """Exchange email and password for a bearer access token and a refresh token."""
    user = await service.authenticate(db, email=body.email, password=body.password, ip=client_ip(request))
    tokens = await service.issue_tokens(
        db, user, user_agent=request.headers.get("user-agent", ""), ip=client_ip(request)
    )
    return TokenOut(access_token=tokens.access_token, expires_in=tokens.expires_in, refresh_token=tokens.refresh_token)


@router.post("/auth/refresh")
async def refresh(body: RefreshIn, db: SessionDep) -> TokenOut:
    """Swap a refresh token for new tokens; the old refresh token stops working."""
    tokens = await service.refresh(db, body.refresh_token)
    return TokenOut(access_token=tokens.access_token, expires_in=tokens.expires_in, refresh_token=tokens.refresh_token)


@router.post("/auth/logout", status_code=204)
async def logout(principal: CurrentPrincipal, db: SessionDep, body: LogoutIn | None = None) -> Response:
    """Revoke the given refresh token (API) or the browser session (cookie)."""
    if body is not None and body.refresh_token:
        await service.revoke_token(db, body.refresh_token, "refresh")
    if principal.session_id is not None:
        from control_plane.models import UserSession

        row = await db.get(UserSession, principal.session_id)
        if row is not None:
            from datetime import UTC, datetime

            row.revoked_at = datetime.now(UTC)
    return Response(status_code=204)


@router.get("/me")
async def me(user: CurrentUser, db: SessionDep) -> MeOut:
    """The signed-in user with the workspaces they belong to."""
    return await me_out(db, user)
