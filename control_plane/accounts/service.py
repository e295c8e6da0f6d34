"""Account rules: registration (with the user's own tenant on a trial), sign-in, tokens and sessions, email
verification, password reset, profile, and sign-in with Google.

Services flush, never commit: the request that calls them owns the transaction (mail is part of it, see kit.mail).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime.i18n import N_
from control_plane.accounts import emails, repository
from control_plane.accounts.errors import (
    AlreadyVerified,
    GoogleSignInRefused,
    InvalidEmailToken,
    WrongCurrentPassword,
)
from control_plane.kit import mail, ratelimit, security
from control_plane.kit import redis as rds
from control_plane.kit.errors import Conflict, NotAuthenticated
from control_plane.models import Role, Tenant, TenantMember, User, UserSession
from control_plane.settings import get_settings

VERIFY = "verify"
RESET = "reset"


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
    """An access token bound to a new refresh session: revoking the session (logout, password change, reset)
    ends the access token at once instead of when it expires."""
    refresh, row = await new_session(db, user, kind="refresh", user_agent=user_agent, ip=ip)
    access, expires_in = security.create_access_token(str(user.id), extra={"sid": str(row.id)})
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


async def sign_up(db: AsyncSession, *, email: str, password: str, name: str, language: str, ip: str) -> User:
    """Registration from the API or the register page: limited per IP, then a verification mail goes out."""
    settings = get_settings()
    await ratelimit.enforce(
        "register-ip", ip, limit=settings.register_limit_per_ip, window_seconds=settings.register_window_seconds
    )
    user = await register(db, email=email, password=password, name=name, language=language)
    await send_verification(db, user)
    return user


async def start_browser_session(db: AsyncSession, user: User, *, user_agent: str, ip: str) -> str:
    """A new browser session for a signed-in user; returns the cookie value."""
    secret, _ = await new_session(db, user, kind="browser", user_agent=user_agent, ip=ip)
    return secret


async def end_session(db: AsyncSession, session_id: uuid.UUID) -> None:
    row = await db.get(UserSession, session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)


# Single-use emailed tokens ------------------------------------------------------------------------------------


async def issue_email_token(db: AsyncSession, user: User, purpose: str) -> str:
    """A new single-use token (only its hash is stored); earlier unused ones of the same purpose stop working."""
    settings = get_settings()
    ttl = settings.email_verification_ttl_seconds if purpose == VERIFY else settings.password_reset_ttl_seconds
    await repository.retire_email_tokens(db, user.id, purpose)
    secret = security.new_token()
    await repository.add_email_token(
        db,
        user_id=user.id,
        purpose=purpose,
        hashed=security.token_hash(secret),
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
    )
    return secret


async def consume_email_token(db: AsyncSession, token: str, purpose: str) -> User:
    """Use a token once; unknown, used, expired and replaced tokens all get the same answer."""
    row = await repository.live_email_token_for_update(db, security.token_hash(token), purpose)
    if row is None:
        raise InvalidEmailToken()
    user = await db.get(User, row.user_id)
    if user is None or not user.is_active:
        raise InvalidEmailToken()
    row.used_at = datetime.now(UTC)
    return user


# Email verification -------------------------------------------------------------------------------------------


async def send_verification(db: AsyncSession, user: User) -> None:
    """Mail a fresh verification link to the user's address."""
    token = await issue_email_token(db, user, VERIFY)
    await mail.send_mail(db, emails.verification_mail(user, token))


async def resend_verification(db: AsyncSession, user: User) -> None:
    """Another verification mail on request, limited per user so nobody mail-bombs an address they typed in."""
    if user.email_verified_at is not None:
        raise AlreadyVerified()
    settings = get_settings()
    await ratelimit.enforce(
        "verify-resend",
        str(user.id),
        limit=settings.verification_resend_limit_per_user,
        window_seconds=settings.verification_resend_window_seconds,
    )
    await send_verification(db, user)


async def verify_email(db: AsyncSession, token: str) -> User:
    user = await consume_email_token(db, token, VERIFY)
    if user.email_verified_at is None:
        user.email_verified_at = datetime.now(UTC)
    return user


# Password reset -----------------------------------------------------------------------------------------------


async def request_password_reset(db: AsyncSession, *, email: str, ip: str) -> None:
    """Mail a reset link when the account exists. The caller answers the same either way, so nobody learns
    which addresses have accounts; past the per-address limit the mail is silently skipped for the same reason."""
    settings = get_settings()
    window = settings.password_reset_window_seconds
    await ratelimit.enforce("reset-ip", ip, limit=settings.password_reset_limit_per_ip, window_seconds=window)
    email = email.strip().lower()
    allowed, _ = await rds.hit(
        "reset-email", email, limit=settings.password_reset_limit_per_email, window_seconds=window
    )
    user = await repository.user_by_email(db, email)
    if user is None or not user.is_active or not allowed:
        return
    token = await issue_email_token(db, user, RESET)
    await mail.send_mail(db, emails.password_reset_mail(user, token))


async def reset_password(db: AsyncSession, *, token: str, password: str) -> User:
    """Set a new password from an emailed link and sign out everywhere (the old password may be known to someone)."""
    user = await consume_email_token(db, token, RESET)
    user.password_hash = security.hash_password(password)
    # The link arrived in the mailbox, which is what verification proves too.
    if user.email_verified_at is None:
        user.email_verified_at = datetime.now(UTC)
    await repository.retire_email_tokens(db, user.id, RESET)
    await repository.revoke_sessions(db, user.id)
    await ratelimit.clear_login_failures(email=user.email)
    return user


# Profile ------------------------------------------------------------------------------------------------------


async def update_profile(
    db: AsyncSession, user: User, *, name: str | None = None, language: str | None = None, timezone: str | None = None
) -> User:
    """Change the given fields (already validated by the schema); None leaves a field as it is."""
    if name is not None:
        user.name = name
    if language is not None:
        user.language = language
    if timezone is not None:
        user.timezone = timezone
    await db.flush()
    return user


async def change_password(
    db: AsyncSession,
    user: User,
    *,
    current_password: str,
    new_password: str,
    keep_session: uuid.UUID | None,
    ip: str,
) -> None:
    """Set a new password after checking the current one, and sign out every other session and refresh token.

    Wrong current passwords count as failed sign-ins, so a stolen session cannot be used to guess the password.
    """
    await ratelimit.check_login_allowed(email=user.email, ip=ip)
    if not security.verify_password(user.password_hash, current_password):
        await ratelimit.record_login_failure(email=user.email, ip=ip)
        raise WrongCurrentPassword()
    user.password_hash = security.hash_password(new_password)
    await repository.revoke_sessions(db, user.id, keep=keep_session)
    await repository.retire_email_tokens(db, user.id, RESET)


# Sign in with Google ------------------------------------------------------------------------------------------


async def google_sign_in(
    db: AsyncSession, *, sub: str, email: str, email_verified: bool, name: str, language: str
) -> User:
    """The user behind a verified Google identity: linked by Google subject, else by verified email, else new.

    An unverified Google address is refused: linking it would hand an existing account (or, for a new one, the
    address) to whoever typed it in at Google.
    """
    user = await repository.user_by_google_sub(db, sub)
    if user is None:
        email = email.strip().lower()
        if not email or not email_verified:
            raise GoogleSignInRefused()
        user = await repository.user_by_email(db, email)
        if user is None:
            user = await register(db, email=email, password=None, name=name or email.split("@")[0], language=language)
        elif user.google_sub is not None:
            # The address belongs to an account already tied to a different Google identity.
            raise GoogleSignInRefused()
        elif user.email_verified_at is None:
            # Nobody proved this mailbox before Google did: whoever registered the address may not own it, so their
            # password and sessions go (the owner can set a password through the reset link).
            user.password_hash = None
            await repository.revoke_sessions(db, user.id)
        user.google_sub = sub
        if user.email_verified_at is None:
            user.email_verified_at = datetime.now(UTC)
        await db.flush()
    if not user.is_active:
        raise GoogleSignInRefused()
    return user
