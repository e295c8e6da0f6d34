"""Named rate limits on top of the Redis counters: sign-in failures, registrations, password resets, consoles."""

from __future__ import annotations

from bot_runtime.i18n import N_
from control_plane.kit import redis as rds
from control_plane.kit.errors import RateLimited
from control_plane.settings import get_settings


def _limited(retry_after: int) -> RateLimited:
    return RateLimited(
        N_("Too many attempts. Please try again in %(seconds)s seconds."),
        params={"seconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


async def check_login_allowed(*, email: str, ip: str) -> None:
    """Refuse before checking the password once either the account or the IP has failed too often."""
    settings = get_settings()
    if await rds.peek("login-fail-account", email) >= settings.login_fail_limit_per_account:
        raise _limited(settings.login_fail_window_seconds)
    await check_ip_login_allowed(ip)


async def check_ip_login_allowed(ip: str) -> None:
    """The per-IP half of :func:`check_login_allowed`, alone for the built-in admin, who has no account to lock."""
    settings = get_settings()
    if await rds.peek("login-fail-ip", ip) >= settings.login_fail_limit_per_ip:
        raise _limited(settings.login_fail_window_seconds)


async def record_login_failure(*, email: str, ip: str) -> None:
    settings = get_settings()
    window = settings.login_fail_window_seconds
    await rds.hit("login-fail-account", email, limit=settings.login_fail_limit_per_account, window_seconds=window)
    await record_ip_login_failure(ip)


async def record_ip_login_failure(ip: str) -> None:
    settings = get_settings()
    window = settings.login_fail_window_seconds
    await rds.hit("login-fail-ip", ip, limit=settings.login_fail_limit_per_ip, window_seconds=window)


async def clear_login_failures(*, email: str) -> None:
    await rds.reset("login-fail-account", email)


async def enforce(name: str, subject: str, *, limit: int, window_seconds: int) -> None:
    """Count one use of ``name`` by ``subject`` and refuse it past ``limit`` in the window."""
    allowed, retry_after = await rds.hit(name, subject, limit=limit, window_seconds=window_seconds)
    if not allowed:
        raise _limited(retry_after)
