"""Runtimes console pages: every runtime (with the live hosts), one runtime with its log tail, and command forms.

A command form posts to ``/{lang}/admin/runtimes/{tenant_id}/{command}`` with the CSRF token and comes back (303)
to the page it was sent from. The outcome rides in a short-lived cookie rather than the URL, since it carries the
host's own answer. The pages are complete without scripts; with them, a small poll of the JSON API keeps the
numbers current and reloads the page when a runtime changes state.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from admin_console.auth import AdminPagePrincipal
from admin_console.runtimes import service
from admin_console.runtimes.schemas import LogStream, RuntimeLogsOut
from bot_runtime.i18n import gettext
from control_plane.accounts.auth import check_csrf
from control_plane.accounts.pages import read_form, safe_next
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import AppError, Forbidden
from control_plane.kit.pages import Lang, client_ip, page_number
from control_plane.kit.redis import get_redis
from control_plane.kit.templating import render
from control_plane.settings import get_settings

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
LOG_LINE_CHOICES = (50, 100, 200, 500)
LOG_STREAMS: tuple[LogStream, ...] = ("stderr", "stdout")
REFRESH_SECONDS = 5
FLASH_MAX_AGE = 60


def _formatters() -> dict[str, Any]:
    return {
        "state_label": service.state_label,
        "state_labels": service.STATE_LABELS,
        "format_uptime": service.format_uptime,
        "format_memory": service.format_memory,
        "format_age": service.format_age,
        "refresh_seconds": REFRESH_SECONDS,
    }


# The outcome of a command, shown once on the page the form returns to --------------------------------------------


def _flash_cookie() -> str:
    return get_settings().session_cookie_name + "_admin_flash"


def _set_flash(response: Response, command: str, ok: bool, detail: str) -> None:
    # Only the facts travel; the page words them in its own language when it shows them.
    raw = json.dumps({"command": command, "ok": ok, "detail": detail[:300]}, separators=(",", ":"))
    response.set_cookie(
        _flash_cookie(),
        base64.urlsafe_b64encode(raw.encode()).decode(),
        max_age=FLASH_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=get_settings().https,
    )


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(_flash_cookie())
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
        command, ok, detail = str(data["command"]), bool(data["ok"]), str(data.get("detail", ""))[:300]
    except (binascii.Error, ValueError, TypeError, KeyError):
        return None
    if command not in service.COMMANDS:
        return None
    return {"kind": "success" if ok else "error", "message": service.outcome_message(command, ok, detail)}


def _with_flash(request: Request, template: str, context: dict[str, Any]) -> Response:
    flash = _read_flash(request)
    response = render(request, template, {**_formatters(), **context, **({"flash": flash} if flash else {})})
    if _flash_cookie() in request.cookies:
        response.delete_cookie(_flash_cookie(), path="/", httponly=True, samesite="strict")
    return response


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


# Pages ---------------------------------------------------------------------------------------------------------


@router.get("/{lang}/admin/runtimes")
async def runtimes_page(request: Request, lang: Lang, admin: AdminPagePrincipal, db: SessionDep) -> Response:
    if admin is None:
        return RedirectResponse(f"/{lang}/admin/login", status_code=303)
    redis = get_redis()
    state = request.query_params.get("state", "")
    if state not in service.STATE_LABELS:
        state = ""
    page = page_number(request)
    items = await service.list_runtimes(redis, db)
    counts = Counter(item.state for item in items)
    shown = [item for item in items if item.state == state] if state else items
    offset = (page - 1) * PAGE_SIZE
    api_query = {"limit": PAGE_SIZE, "offset": offset, **({"state": state} if state else {})}
    return _with_flash(
        request,
        "admin/runtimes.html",
        {
            "admin": admin,
            "runtimes": shown[offset : offset + PAGE_SIZE],
            "total": len(shown),
            "all_total": len(items),
            "counts": counts,
            "state": state,
            "page": page,
            "has_next": offset + PAGE_SIZE < len(shown),
            "hosts": await service.list_hosts(redis, items),
            "back": _here(request),
            "poll_url": "/api/v1/admin/runtimes?" + urlencode(api_query),
        },
    )


@router.get("/{lang}/admin/runtimes/{tenant_id}")
async def runtime_page(
    request: Request, lang: Lang, tenant_id: str, admin: AdminPagePrincipal, db: SessionDep
) -> Response:
    if admin is None:
        return RedirectResponse(f"/{lang}/admin/login", status_code=303)
    redis = get_redis()
    runtime = await service.get_runtime(redis, db, tenant_id)
    try:
        lines = int(request.query_params.get("lines", "100"))
    except ValueError:
        lines = 100
    lines = lines if lines in LOG_LINE_CHOICES else 100
    query_stream = request.query_params.get("stream", "stderr")
    stream: LogStream = "stdout" if query_stream == "stdout" else "stderr"
    logs: RuntimeLogsOut | None = None
    logs_error = ""
    try:
        logs = await service.log_tail(redis, tenant_id, lines=lines, stream=stream)
    except AppError as exc:
        logs_error = gettext(exc.message, **exc.params)
    return _with_flash(
        request,
        "admin/runtimes_detail.html",
        {
            "admin": admin,
            "runtime": runtime,
            "logs": logs,
            "logs_error": logs_error,
            "lines": lines,
            "stream": stream,
            "line_choices": LOG_LINE_CHOICES,
            "back": _here(request),
            "poll_url": f"/api/v1/admin/runtimes/{tenant_id}",
        },
    )


@router.post("/{lang}/admin/runtimes/{tenant_id}/{command}")
async def runtime_command(
    request: Request, lang: Lang, tenant_id: str, command: str, admin: AdminPagePrincipal, db: SessionDep
) -> Response:
    await check_csrf(request)
    if admin is None:
        raise Forbidden()
    result = await service.run_command(
        get_redis(),
        db,
        tenant_id,
        command,
        actor_user_id=admin.user.id if admin.user is not None else None,
        ip=client_ip(request),
    )
    back = safe_next((await read_form(request)).get("next"))
    if back is None or not back.startswith(f"/{lang}/admin/runtimes"):
        back = f"/{lang}/admin/runtimes/{tenant_id}"
    response = RedirectResponse(back, status_code=303)
    _set_flash(response, command, result.ok, result.detail)
    return response
