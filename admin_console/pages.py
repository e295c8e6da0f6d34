"""Admin console HTML pages: sign in, sign out, tenants, the abuse log. Runtimes live in ``admin_console.runtimes``."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from admin_console import repository, service
from admin_console.auth import AdminPagePrincipal, clear_admin_cookie, set_admin_cookie
from admin_console.schemas import AdminLoginIn
from billing.plans import PLANS
from bot_runtime.i18n import N_
from control_plane.accounts.admin import admin_sign_in
from control_plane.accounts.auth import check_csrf
from control_plane.accounts.pages import form_page, read_form, undo, validate_form
from control_plane.jobs import model_check
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import AppError, Forbidden, NotFound
from control_plane.kit.pages import Lang, client_ip, page_number
from control_plane.kit.redis import get_redis
from control_plane.kit.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TENANT_STATUS_LABELS = {"active": N_("Active"), "suspended": N_("Suspended")}


@router.get("/{lang}/admin")
@router.get("/{lang}/admin/")
async def home(lang: Lang) -> RedirectResponse:
    return RedirectResponse(f"/{lang}/admin/tenants", status_code=303)


def _login_page(
    request: Request, *, status_code: int = 200, exc: AppError | None = None, **context: Any
) -> HTMLResponse:
    return form_page(
        request, "admin/login.html", {"values": {}, "errors": {}, **context}, status_code=status_code, exc=exc
    )


@router.get("/{lang}/admin/login")
async def login_page(request: Request, lang: Lang, admin: AdminPagePrincipal) -> Response:
    if admin is not None:
        return RedirectResponse(f"/{lang}/admin/tenants", status_code=303)
    return _login_page(request)


@router.post("/{lang}/admin/login")
async def login_submit(request: Request, lang: Lang, db: SessionDep) -> Response:
    await check_csrf(request)
    data = await read_form(request)
    values = {"email": data.get("email", "").strip()}
    # An empty email field means "the built-in admin", not an invalid address.
    body, errors = validate_form(AdminLoginIn, {"password": data.get("password", ""), "email": values["email"] or None})
    if body is None:
        return _login_page(request, values=values, errors=errors, status_code=422)
    try:
        _, token, expires_in = await admin_sign_in(db, password=body.password, email=body.email, ip=client_ip(request))
    except AppError as exc:
        await undo(request, db)
        return _login_page(request, values=values, exc=exc)
    response = RedirectResponse(f"/{lang}/admin/tenants", status_code=303)
    set_admin_cookie(response, token, expires_in)
    return response


@router.post("/{lang}/admin/logout")
async def logout_submit(request: Request, lang: Lang) -> Response:
    await check_csrf(request)
    response = RedirectResponse(f"/{lang}/admin/login", status_code=303)
    clear_admin_cookie(response)
    return response


@router.get("/{lang}/admin/tenants")
async def tenants_page(request: Request, lang: Lang, admin: AdminPagePrincipal, db: SessionDep) -> Response:
    if admin is None:
        return RedirectResponse(f"/{lang}/admin/login", status_code=303)
    query = request.query_params.get("q", "").strip()[:200]
    page = page_number(request)
    items, total = await repository.list_tenants(db, query=query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    check = await model_check.read_result(get_redis())
    return render(
        request,
        "admin/tenants.html",
        {
            "admin": admin,
            "missing_models": (check or {}).get("missing") or [],
            "tenants": items,
            "total": total,
            "query": query,
            "page": page,
            "has_next": page * PAGE_SIZE < total,
            "plan_names": {code: plan.name for code, plan in PLANS.items()},
            "status_labels": TENANT_STATUS_LABELS,
        },
    )


@router.post("/{lang}/admin/tenants/{tenant_id}/{action}")
async def tenant_status_submit(
    request: Request, lang: Lang, tenant_id: uuid.UUID, action: str, admin: AdminPagePrincipal, db: SessionDep
) -> Response:
    """Suspend or resume a tenant from the tenants page (CSRF-checked form)."""
    await check_csrf(request)
    if admin is None:
        raise Forbidden()
    if action not in ("suspend", "resume"):
        raise NotFound()
    await service.set_tenant_status(
        db,
        tenant_id,
        "suspended" if action == "suspend" else "active",
        actor_user_id=admin.user.id if admin.user is not None else None,
        ip=client_ip(request),
    )
    return RedirectResponse(f"/{lang}/admin/tenants", status_code=303)


@router.get("/{lang}/admin/abuse-log")
async def abuse_log_page(request: Request, lang: Lang, admin: AdminPagePrincipal, db: SessionDep) -> Response:
    if admin is None:
        return RedirectResponse(f"/{lang}/admin/login", status_code=303)
    raw = request.query_params.get("tenant_id", "").strip()
    try:
        tenant_id = uuid.UUID(raw) if raw else None
    except ValueError:
        tenant_id, raw = None, ""
    page = page_number(request)
    items, total = await repository.list_abuse_log(
        db, tenant_id=tenant_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render(
        request,
        "admin/abuse_log.html",
        {
            "admin": admin,
            "entries": items,
            "total": total,
            "tenant_id": raw,
            "page": page,
            "has_next": page * PAGE_SIZE < total,
        },
    )
