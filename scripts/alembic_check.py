"""`alembic check` for `make test`: do the models match the migrations?

Needs a database at head, so: take the server named by TEST_DATABASE_URL (or start a throwaway embedded one),
create a scratch database on it, `alembic upgrade head`, `alembic check`, and drop the scratch database again. The
server's other databases are never touched. Alembic reads the URL from DATABASE_URL (alembic/env.py uses settings).
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

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control_plane.settings import to_asyncpg_url  # noqa: E402 - needs the repo root on sys.path first


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield to_asyncpg_url(url)
        return
    from control_plane.kit.embedded import throwaway_postgres

    with throwaway_postgres() as embedded_url:
        yield embedded_url


async def _admin(url: str, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def alembic(*args: str, database_url: str) -> int:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env, check=False).returncode


def main() -> int:
    if not (ROOT / "alembic.ini").exists():
        print("alembic_check: no alembic.ini yet, nothing to check")
        return 0
    name = "bf_alembic_check_" + secrets.token_hex(4)
    with server_url() as url:
        scratch = make_url(url).set(database=name).render_as_string(hide_password=False)
        asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
        try:
            code = alembic("upgrade", "head", database_url=scratch)
            if code == 0:
                code = alembic("check", database_url=scratch)
        finally:
            asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return code


if __name__ == "__main__":
    sys.exit(main())
