"""Admin REST API: sign in, then Bearer the admin token on /api/v1/admin/*."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from admin_console import repository, service
from admin_console.schemas import (
    AdminAbusePage,
    AdminLoginIn,
    AdminTenantPage,
    AdminTenantStatusOut,
    AdminTokenOut,
)
from control_plane.accounts.admin import admin_sign_in
from control_plane.accounts.auth import PlatformAdmin
from control_plane.kit.db import SessionDep
from control_plane.kit.pages import client_ip
from control_plane.kit.paging import Offset

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.post("/login")
async def login(body: AdminLoginIn, request: Request, db: SessionDep) -> AdminTokenOut:
    """An admin access token: ADMIN_PASSWORD alone (the built-in admin), or the email and password of a user made
    platform admin with ``botfactory create-admin``. Failed attempts are limited per IP."""
    _, token, expires_in = await admin_sign_in(db, password=body.password, email=body.email, ip=client_ip(request))
    return AdminTokenOut(access_token=token, expires_in=expires_in)


@router.get("/tenants")
async def tenants(
    admin: PlatformAdmin,
    db: SessionDep,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> AdminTenantPage:
    """Every tenant, newest first; ``q`` matches the tenant name or a member's email."""
    items, total = await repository.list_tenants(db, query=q.strip(), limit=limit, offset=offset)
    return AdminTenantPage(items=items, total=total, limit=limit, offset=offset)


@router.post("/tenants/{tenant_id}/suspend")
async def suspend_tenant(
    tenant_id: uuid.UUID, admin: PlatformAdmin, request: Request, db: SessionDep
) -> AdminTenantStatusOut:
    """Suspend a tenant: its runtime stops; webhooks are still acknowledged and their messages wait."""
    tenant = await service.set_tenant_status(
        db, tenant_id, "suspended", actor_user_id=admin.user.id if admin.user else None, ip=client_ip(request)
    )
    return AdminTenantStatusOut(id=tenant.id, status=tenant.status)


@router.post("/tenants/{tenant_id}/resume")
async def resume_tenant(
    tenant_id: uuid.UUID, admin: PlatformAdmin, request: Request, db: SessionDep
) -> AdminTenantStatusOut:
    """Lift a suspension: the tenant's runtime starts again (when its plan is paid and a bot is enabled)."""
    tenant = await service.set_tenant_status(
        db, tenant_id, "active", actor_user_id=admin.user.id if admin.user else None, ip=client_ip(request)
    )
    return AdminTenantStatusOut(id=tenant.id, status=tenant.status)


@router.get("/abuse-log")
async def abuse_log(
    admin: PlatformAdmin,
    db: SessionDep,
    tenant_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> AdminAbusePage:
    """Messages the guardrails refused, on every channel and the test console, newest first; ``tenant_id`` keeps
    one tenant's."""
    items, total = await repository.list_abuse_log(db, tenant_id=tenant_id, limit=limit, offset=offset)
    return AdminAbusePage(items=items, total=total, limit=limit, offset=offset)
