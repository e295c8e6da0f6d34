"""Runtimes admin API: /api/v1/admin/runtimes and /api/v1/admin/hosts (platform admins only).

Runtime state is read from Redis as the host agents publish it; commands go to the leasing host's control stream
and log tails to its log request channel (``control_plane.runtimes.operations``).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from redis.asyncio import Redis

from admin_console.auth import ConsoleAdmin
from admin_console.runtimes import service
from admin_console.runtimes.schemas import (
    HostList,
    LogStream,
    RuntimeCommandOut,
    RuntimeLogsOut,
    RuntimeOut,
    RuntimePage,
)
from control_plane.accounts.auth import Principal
from control_plane.kit.db import SessionDep
from control_plane.kit.pages import client_ip
from control_plane.kit.paging import Offset
from control_plane.kit.redis import get_redis

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

RedisDep = Annotated[Redis, Depends(get_redis)]
StateFilter = Annotated[str | None, Query(pattern="^(" + "|".join(service.STATE_LABELS) + ")$")]


@router.get("/runtimes")
async def list_runtimes(
    admin: ConsoleAdmin,
    redis: RedisDep,
    db: SessionDep,
    state: StateFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Offset = 0,
) -> RuntimePage:
    """Every tenant runtime (running, idle, stopped, crash-looping …) as its host last reported it, by tenant name;
    ``state`` keeps one state. Rows marked ``stale`` claim to be active but their host has gone quiet."""
    items = await service.list_runtimes(redis, db)
    if state:
        items = [item for item in items if item.state == state]
    return RuntimePage(items=items[offset : offset + limit], total=len(items), limit=limit, offset=offset)


@router.get("/runtimes/{tenant_id}")
async def get_runtime(tenant_id: str, admin: ConsoleAdmin, redis: RedisDep, db: SessionDep) -> RuntimeOut:
    """One tenant's runtime; 404 when no host ever ran it and it should not run."""
    return await service.get_runtime(redis, db, tenant_id)


def _actor(admin: Principal) -> uuid.UUID | None:
    return admin.user.id if admin.user is not None else None  # None: the built-in ADMIN_PASSWORD admin


@router.post("/runtimes/{tenant_id}/start", status_code=status.HTTP_202_ACCEPTED)
async def start_runtime(
    tenant_id: str, request: Request, admin: ConsoleAdmin, redis: RedisDep, db: SessionDep
) -> RuntimeCommandOut:
    """Clear an operator stop and run the tenant: its leasing host is told at once (which also resets a crash-loop
    backoff); when nobody leases it, it is woken and the first host to take the lease starts it. ``ok`` says
    whether a host confirmed within a few seconds; ``detail`` is the host's own answer."""
    return await service.run_command(redis, db, tenant_id, "start", actor_user_id=_actor(admin), ip=client_ip(request))


@router.post("/runtimes/{tenant_id}/stop", status_code=status.HTTP_202_ACCEPTED)
async def stop_runtime(
    tenant_id: str, request: Request, admin: ConsoleAdmin, redis: RedisDep, db: SessionDep
) -> RuntimeCommandOut:
    """Hold the tenant (no host starts it until ``start``) and stop it where it runs. The hold is durable: it takes
    effect on the host's next tick even if the host does not answer now."""
    return await service.run_command(redis, db, tenant_id, "stop", actor_user_id=_actor(admin), ip=client_ip(request))


@router.post("/runtimes/{tenant_id}/restart", status_code=status.HTTP_202_ACCEPTED)
async def restart_runtime(
    tenant_id: str, request: Request, admin: ConsoleAdmin, redis: RedisDep, db: SessionDep
) -> RuntimeCommandOut:
    """Restart the runtime on the host that leases it (resets a crash-loop backoff); an idle runtime is woken."""
    return await service.run_command(
        redis, db, tenant_id, "restart", actor_user_id=_actor(admin), ip=client_ip(request)
    )


@router.get("/runtimes/{tenant_id}/logs")
async def runtime_logs(
    tenant_id: str,
    admin: ConsoleAdmin,
    redis: RedisDep,
    lines: Annotated[int, Query(ge=1, le=1000)] = 100,
    stream: LogStream = "stderr",
) -> RuntimeLogsOut:
    """The last log lines of the runtime (``stderr``: its structured JSON log; ``stdout``), served by the host that
    runs it or last ran it. 504 when that host does not answer within a couple of seconds."""
    return await service.log_tail(redis, tenant_id, lines=lines, stream=stream)


@router.get("/hosts")
async def list_hosts(admin: ConsoleAdmin, redis: RedisDep) -> HostList:
    """Runtime hosts with a current heartbeat, how many tenants each leases, and those tenants' states."""
    items = await service.list_hosts(redis)
    return HostList(items=items, total=len(items))
