"""Liveness (/healthz) and readiness (/readyz: database, Redis, migrations at head)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from control_plane.kit.db import get_sessionmaker
from control_plane.kit.redis import get_redis

router = APIRouter(include_in_schema=False)
ROOT = Path(__file__).resolve().parents[2]


@functools.cache  # the migration scripts only change with a deploy; readiness probes call this every few seconds
def alembic_heads() -> frozenset[str]:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz() -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with get_sessionmaker()() as session:
            current = set((await session.execute(text("SELECT version_num FROM alembic_version"))).scalars())
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == alembic_heads() else "pending"
    except Exception as exc:  # readiness reports any failure, whatever it is
        checks["database"] = f"error: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    try:
        await get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
