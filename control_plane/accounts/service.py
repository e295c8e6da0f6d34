"""Account rules: registration (with the user's own tenant on a trial), sign-in, tokens and sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime.i18n import N_
from control_plane.accounts import repository
from control_plane.kit import ratelimit, security
from control_plane.kit.errors import Conflict, NotAuthenticated
from control_plane.models import Role, Tenant, TenantMember, User, UserSession
from control_plane.settings import get_settings


@dataclass(slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str


async def register(
    db: AsyncSession, *, email: str, password: str | None, name: str, language: str, timezone: str = "UTC"
) -> User:
    """Create the user and their own tenant (owner role) on the free trial."""
    settings = get_settings()
    email = email.strip().lower()
    if await repository.user_by_email(db, email) is not None:
        raise Conflict(N_("An account with this email already exists."), fields=[("email", N_("Already registered."))])
    user = User(
        email=email,
        name=name,
        password_hash=security.hash_password(password) if password else None,
        language=language,
        timezone=timezone,
    )
    tenant = Tenant(
        name=name,
        timezone=timezone,
        plan="free",
        trial_ends_at=datetime.now(UTC) + timedelta(days=settings.trial_days),
    )
    db.add_all([user, tenant])
    try:
        await db.flush()
    except IntegrityError as exc:  # a concurrent registration with the same email won the race
        raise Conflict(N_("An account with this email already exists.")) from exc
    db.add(TenantMember(tenant_id=tenant.id, user_id=user.id, role=Role.owner))
    await db.flush()
    return user


async def authenticate(db: AsyncSession, *, email: str, password: str, ip: str) -> User:
    """Check credentials under per-account and per-IP failure limits; the same error for every failure."""
    email = email.strip().lower()
    await ratelimit.check_login_allowed(email=email, ip=ip)
    user = await repository.user_by_email(db, email)
    if user is None or not user.is_active or not security.verify_password(user.password_hash, password):
        await ratelimit.record_login_failure(email=email, ip=ip)
        raise NotAuthenticated(N_("Wrong email or password."))
    await ratelimit.clear_login_failures(email=email)
    return user


async def new_session(
    db: AsyncSession, user: User, *, kind: str, user_agent: str = "", ip: str = ""
) -> tuple[str, UserSession]:
    """A browser session or refresh token; returns the secret (shown once) and the stored row."""
    settings = get_settings()
    ttl = settings.session_ttl_seconds if kind == "browser" else settings.refresh_token_ttl_seconds
    secret = security.new_token()
    row = UserSession(
        user_id=user.id,
        kind=kind,
        token_hash=security.token_hash(secret),
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        user_agent=user_agent[:400],
        ip=ip[:64],
    )
    db.add(row)
    await db.flush()
    return secret, row


async def issue_tokens(db: AsyncSession, user: User, *, user_agent: str = "", ip: str = "") -> IssuedTokens:
    access, expires_in = security.create_access_token(str(user.id))
    refresh, _ = await new_session(db, user, kind="refresh", user_agent=user_agent, ip=ip)
    return IssuedTokens(access_token=access, expires_in=expires_in, refresh_token=refresh)


async def refresh(db: AsyncSession, refresh_token: str) -> IssuedTokens:
    """Rotate a refresh token: the old one is revoked, so a stolen copy works at most once."""
    row = await repository.live_session(db, security.token_hash(refresh_token), "refresh")
    if row is None:
        raise NotAuthenticated(N_("Your sign-in has expired. Please sign in again."))
    user = await db.get(User, row.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated()
    row.revoked_at = datetime.now(UTC)
    return await issue_tokens(db, user, user_agent=row.user_agent, ip=row.ip)


async def revoke_token(db: AsyncSession, secret: str, kind: str) -> None:
    row = await repository.live_session(db, security.token_hash(secret), kind)
    if row is not None:
        row.revoked_at = datetime.now(UTC)


async def change_password(db: AsyncSession, user: User, new_password: str, *, keep_session: uuid.UUID | None) -> None:
    """Set a new password and sign out every other session and refresh token."""
    user.password_hash = security.hash_password(new_password)
    await repository.revoke_sessions(db, user.id, keep=keep_session)
