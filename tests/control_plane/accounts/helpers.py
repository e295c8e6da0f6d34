"""Helpers for the accounts and admin tests: settings overrides, CSRF tokens from pages, tokens from the outbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@contextmanager
def settings_override(monkeypatch: pytest.MonkeyPatch, **values: object) -> Iterator[None]:
    """Set environment variables and rebuild the cached settings; both come back afterwards."""
    from control_plane.settings import get_settings

    with monkeypatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name.upper(), str(value))
        get_settings.cache_clear()
        try:
            yield
        finally:
            patch.undo()
            get_settings.cache_clear()


async def csrf_from(client: httpx.AsyncClient, path: str) -> str:
    """Load a page (which also gives the client its CSRF seed cookie) and return the form's CSRF token."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    match = CSRF_INPUT.search(response.text)
    assert match, f"no csrf_token field on {path}"
    return match.group(1)


async def outbox_for(email: str) -> list[object]:
    """Mails kept for ``email``, newest first."""
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import OutboxEmail

    async with get_sessionmaker()() as db:
        rows = await db.scalars(
            select(OutboxEmail).where(OutboxEmail.to_address == email).order_by(OutboxEmail.created_at.desc())
        )
        return list(rows)


def link_token(body: str, page: str) -> tuple[str, str]:
    """(language, token) of the first link to ``page`` in a mail body."""
    match = re.search(rf"https?://[^\s]+/(uz|ru|en)/{page}\?[^\s]+", body)
    assert match, f"no /{page} link in: {body}"
    token = parse_qs(urlsplit(match.group(0)).query)["token"][0]
    return match.group(1), token


async def latest_token(email: str, page: str) -> str:
    mails = await outbox_for(email)
    assert mails, f"no mail for {email}"
    return link_token(mails[0].body_text, page)[1]  # type: ignore[attr-defined]


async def expire_email_tokens(email: str) -> None:
    """Move every email token of the user an hour into the past."""
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import EmailToken, User

    async with get_sessionmaker()() as db:
        user_id = await db.scalar(select(User.id).where(User.email == email))
        await db.execute(
            update(EmailToken)
            .where(EmailToken.user_id == user_id)
            .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
        )
        await db.commit()


async def make_platform_admin(email: str) -> None:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import User

    async with get_sessionmaker()() as db:
        await db.execute(update(User).where(User.email == email).values(is_platform_admin=True))
        await db.commit()


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers of a response by cookie name (the whole header, attributes included)."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}
