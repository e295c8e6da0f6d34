"""Accounts REST API: register, login, refresh, logout, email verification, password reset, profile."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from control_plane.accounts import repository, service
from control_plane.accounts.auth import CurrentPrincipal, CurrentUser
from control_plane.accounts.schemas import (
    LoginIn,
    LogoutIn,
    MeOut,
    PasswordChangeIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    ProfileUpdate,
    RefreshIn,
    RegisterIn,
    TenantOut,
    TokenIn,
    TokenOut,
)
from control_plane.kit.db import SessionDep
from control_plane.kit.pages import client_ip
from control_plane.models import User

router = APIRouter(prefix="/api/v1", tags=["accounts"])


async def me_out(db: SessionDep, user: User) -> MeOut:
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


def token_out(tokens: service.IssuedTokens) -> TokenOut:
    return TokenOut(access_token=tokens.access_token, expires_in=tokens.expires_in, refresh_token=tokens.refresh_token)


@router.post("/auth/register", status_code=201)
async def register(body: RegisterIn, request: Request, db: SessionDep) -> MeOut:
    """Create an account and its own workspace on the 14-day free trial, and mail a link to verify the address.

    Sign-in works before the address is verified. Limited per IP.
    """
    user = await service.sign_up(
        db, email=body.email, password=body.password, name=body.name, language=body.language, ip=client_ip(request)
    )
    return await me_out(db, user)


@router.post("/auth/login")
async def login(body: LoginIn, request: Request, db: SessionDep) -> TokenOut:
    """Exchange email and password for a bearer access token and a refresh token.

    Failed attempts are limited per account and per IP.
    """
    ip = client_ip(request)
    user = await service.authenticate(db, email=body.email, password=body.password, ip=ip)
    return token_out(await service.issue_tokens(db, user, user_agent=request.headers.get("user-agent", ""), ip=ip))


@router.post("/auth/refresh")
async def refresh(body: RefreshIn, db: SessionDep) -> TokenOut:
    """Swap a refresh token for new tokens; the old refresh token stops working."""
    return token_out(await service.refresh(db, body.refresh_token))


@router.post("/auth/logout", status_code=204)
async def logout(principal: CurrentPrincipal, db: SessionDep, body: LogoutIn | None = None) -> Response:
    """Revoke the given refresh token (API) or the browser session (cookie)."""
    if body is not None and body.refresh_token:
        await service.revoke_token(db, body.refresh_token, "refresh")
    if principal.session_id is not None:
        await service.end_session(db, principal.session_id)
    return Response(status_code=204)


@router.post("/auth/verify-email", status_code=204)
async def verify_email(body: TokenIn, db: SessionDep) -> Response:
    """Confirm the email address with the token from the verification link (single use, expiring)."""
    await service.verify_email(db, body.token)
    return Response(status_code=204)


@router.post("/auth/resend-verification", status_code=202)
async def resend_verification(user: CurrentUser, db: SessionDep) -> Response:
    """Mail a new verification link (earlier links stop working). Limited per user; 409 once verified."""
    await service.resend_verification(db, user)
    return Response(status_code=202)


@router.post("/auth/password-reset", status_code=202)
async def password_reset(body: PasswordResetIn, request: Request, db: SessionDep) -> Response:
    """Mail a password reset link if an account has this address. The answer is 202 either way. Limited per IP."""
    await service.request_password_reset(db, email=body.email, ip=client_ip(request))
    return Response(status_code=202)


@router.post("/auth/password-reset/confirm", status_code=204)
async def password_reset_confirm(body: PasswordResetConfirmIn, db: SessionDep) -> Response:
    """Set a new password with the token from the reset link; every session and refresh token is signed out."""
    await service.reset_password(db, token=body.token, password=body.password)
    return Response(status_code=204)


@router.get("/me")
async def me(user: CurrentUser, db: SessionDep) -> MeOut:
    """The signed-in user with the workspaces they belong to."""
    return await me_out(db, user)


@router.patch("/me")
async def update_me(body: ProfileUpdate, user: CurrentUser, db: SessionDep) -> MeOut:
    """Change name, language (uz, ru, en) or time zone (an IANA name such as Asia/Tashkent)."""
    await service.update_profile(db, user, name=body.name, language=body.language, timezone=body.timezone)
    return await me_out(db, user)


@router.post("/me/password", status_code=204)
async def change_password(
    body: PasswordChangeIn, principal: CurrentPrincipal, user: CurrentUser, request: Request, db: SessionDep
) -> Response:
    """Change the password; every other browser session and every refresh token is signed out."""
    await service.change_password(
        db,
        user,
        current_password=body.current_password,
        new_password=body.new_password,
        keep_session=principal.session_id,
        ip=client_ip(request),
    )
    return Response(status_code=204)
