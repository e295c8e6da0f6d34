"""Session-wide services (real PostgreSQL and Redis), a clean slate per test, and an HTTP client for the app."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.fernet import Fernet

from tests import services

_stack: list[object] = []


def pytest_configure(config: pytest.Config) -> None:
    """Start (or name) the servers and set the environment before any application module is imported."""
    import contextlib

    stack = contextlib.ExitStack()
    _stack.append(stack)
    pg = stack.enter_context(services.postgres_server())
    redis_url = stack.enter_context(services.redis_server())
    database_url = stack.enter_context(services.scratch_database(pg))
    os.environ.update(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "TEST_PG_SERVER_URL": pg,
            "REDIS_KEY_PREFIX": f"bft{secrets.token_hex(3)}:",
            "JWT_SECRET_KEY": secrets.token_urlsafe(32),
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "RUNTIME_SECRET_KEY": Fernet.generate_key().decode(),
            "ADMIN_PASSWORD": "admin-test-password-1",
            "DOMAIN_URL": "http://testserver",
            "LOG_LEVEL": "WARNING",
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    while _stack:
        _stack.pop().close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def app():  # type: ignore[no-untyped-def]
    from control_plane.app import app as fastapi_app

    return fastapi_app


async def _clean_database() -> None:
    from sqlalchemy import text

    from control_plane.kit.db import get_engine
    from control_plane.models import Base

    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with get_engine().begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


async def _clean_redis() -> None:
    from control_plane.kit.redis import get_redis
    from control_plane.settings import get_settings

    redis = get_redis()
    prefix = get_settings().redis_key_prefix
    keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(autouse=True)
async def clean_slate() -> AsyncIterator[None]:
    """Every test starts with empty tables and none of this session's Redis keys."""
    from control_plane.runtimes.publish import wait_for_background_publishes

    # A config publication the previous test started after its last commit writes to the outbox table; it must
    # finish before TRUNCATE locks every table, or the two deadlock.
    await wait_for_background_publishes()
    await _clean_database()
    await _clean_redis()
    yield


@pytest.fixture(scope="session", autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    from control_plane.kit.db import dispose_engine
    from control_plane.kit.redis import close_redis

    await dispose_engine()
    await close_redis()


@pytest.fixture
async def client(app) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    import httpx

    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def settings() -> Iterator[object]:
    from control_plane.settings import get_settings

    yield get_settings()
