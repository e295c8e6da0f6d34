"""Where the tests' PostgreSQL and Redis come from, decided once per session.

TEST_DATABASE_URL / TEST_REDIS_URL name existing servers (CI's); otherwise throwaway embedded servers start in a
temp folder. The suite works in its own scratch database and under its own Redis key prefix, and never flushes
a server it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from control_plane.settings import to_asyncpg_url

ROOT = Path(__file__).resolve().parents[1]


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield to_asyncpg_url(url)
        return
    from control_plane.kit.embedded import throwaway_postgres

    with throwaway_postgres() as embedded_url:
        yield to_asyncpg_url(embedded_url)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    from control_plane.kit.embedded import throwaway_valkey

    with throwaway_valkey() as embedded_url:
        yield embedded_url


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A fresh database migrated to head with Alembic (the tests migrate rather than create_all)."""
    name = "bf_test_" + secrets.token_hex(4)
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    url = _with_database(server_url, name)
    try:
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            capture_output=True,
        )
        yield url
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
