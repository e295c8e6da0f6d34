"""Helpers for the bots tests: browser sessions, team members with roles, plans, and real image bytes."""

from __future__ import annotations

import io
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from PIL import Image
from sqlalchemy import delete, select, update

from tests.factories import Account


@dataclass
class Browser:
    """A signed-in browser: the session and CSRF seed cookies, and the token forms and API calls must carry."""

    cookies: dict[str, str]
    csrf_token: str

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def headers(self, *, unsafe: bool = False) -> dict[str, str]:
        headers = {"Cookie": self.cookie_header}
        if unsafe:
            headers["X-CSRF-Token"] = self.csrf_token
        return headers


async def sign_in_browser(account: Account) -> Browser:
    """A live browser session for the account, made the way the sign-in page makes one."""
    from control_plane.accounts.service import new_session
    from control_plane.kit.db import get_sessionmaker
    from control_plane.kit.security import csrf_token_for
    from control_plane.models import User
    from control_plane.settings import get_settings

    settings = get_settings()
    async with get_sessionmaker()() as db:
        user = await db.scalar(select(User).where(User.email == account.email.lower()))
        assert user is not None
        secret, _ = await new_session(db, user, kind="browser")
        await db.commit()
    seed = secrets.token_urlsafe(24)
    return Browser({settings.session_cookie_name: secret, settings.csrf_cookie_name: seed}, csrf_token_for(seed))


@asynccontextmanager
async def browser_client(
    app: object, account: Account | None
) -> AsyncIterator[tuple[httpx.AsyncClient, Browser | None]]:
    """A separate HTTP client that sends the browser cookies of ``account`` (or none: anonymous)."""
    browser = await sign_in_browser(account) if account else None
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))  # type: ignore[arg-type]
    headers = {"Accept": "text/html"}
    if browser:
        # An explicit Cookie header: the cookie jar would not match the dot-less host name "testserver".
        headers["Cookie"] = browser.cookie_header
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as http:
        yield http, browser


async def user_id(account: Account) -> uuid.UUID:
    return uuid.UUID(str(account.me["id"]))


async def add_tenant_member(tenant_id: str, member: Account, role: str) -> None:
    """Make ``member`` a member of another tenant with ``role`` (what the team feature will do)."""
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import TenantMember

    async with get_sessionmaker()() as db:
        db.add(TenantMember(tenant_id=uuid.UUID(tenant_id), user_id=await user_id(member), role=role))
        await db.commit()


async def make_bot_only_member(tenant_id: str, bot_id: str, member: Account, role: str) -> None:
    """Leave ``member`` with nothing but a membership of one bot in another tenant."""
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import BotMember, TenantMember

    async with get_sessionmaker()() as db:
        uid = await user_id(member)
        await db.execute(delete(TenantMember).where(TenantMember.user_id == uid))
        db.add(BotMember(tenant_id=uuid.UUID(tenant_id), bot_id=uuid.UUID(bot_id), user_id=uid, role=role))
        await db.commit()


async def set_tenant(tenant_id: str, **values: object) -> None:
    """Change the tenant's plan or status directly (what billing will do)."""
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import Tenant

    async with get_sessionmaker()() as db:
        await db.execute(update(Tenant).where(Tenant.id == uuid.UUID(tenant_id)).values(**values))
        await db.commit()


async def audit_actions(tenant_id: str) -> list[str]:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import AuditLog

    async with get_sessionmaker()() as db:
        rows = await db.scalars(
            select(AuditLog.action).where(AuditLog.tenant_id == uuid.UUID(tenant_id)).order_by(AuditLog.created_at)
        )
        return list(rows)


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (300, 200), color: str = "#ff6600", mode: str = "RGB"
) -> bytes:
    """A real image made by Pillow."""
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("P", (64, 48), index) for index in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()
