"""Bots HTML pages: the dashboard, the new-bot form, the bot page (settings, avatar, feature sections), deletion.

Forms post back to their own page; cookie-authenticated posts are CSRF-checked by the auth dependency before the
handler runs. Anonymous visitors are sent to the sign-in page with ``next`` pointing back here. Everything goes
through ``bots.service``, exactly like the API.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from billing.limits import PlanLimitReached, TenantSuspended, bot_limit_reached, bot_quota
from bot_runtime.i18n import LOCALES, N_, gettext
from control_plane.accounts.auth import OptionalPrincipal
from control_plane.bots import service
from control_plane.bots.avatar import max_avatar_megabytes
from control_plane.bots.schemas import BotCreate, BotUpdate, WidgetSettings, avatar_path
from control_plane.bots.sections import bot_sections
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import AppError, NotFound, PayloadTooLarge, ValidationFailed, validation_error
from control_plane.kit.i18n import LANGUAGE_NAMES
from control_plane.kit.pages import Lang, client_ip, page_number, redirect
from control_plane.kit.templating import render
from control_plane.kit.tenancy import ROLE_RANK, TenantContext, bot_role, current_tenant
from control_plane.models import Bot, Role
from control_plane.settings import get_settings

router = APIRouter(include_in_schema=False)

DASHBOARD_PAGE_SIZE = 24
# Errors a form shows beside itself; anything else (403, 404 ...) is an error page.
FORM_ERRORS = (PlanLimitReached, TenantSuspended, ValidationFailed, PayloadTooLarge)
TEXT_INPUTS = ("name", "description", "language", "instructions", "welcome_message", "fallback_message")
CHECKBOXES = ("strict", "is_enabled")
WIDGET_INPUTS = ("color", "title", "position", "greeting", "language")
NOTICES = {
    "created": N_("Your bot is ready. Add knowledge and connect a channel next."),
    "saved": N_("Changes saved."),
    "avatar": N_("Avatar updated."),
    "avatar-removed": N_("Avatar removed."),
    "deleted": N_("The bot was deleted."),
}

FormValues = dict[str, Any]
FieldErrors = dict[str, list[str]]


async def page_tenant(request: Request, principal: OptionalPrincipal, db: SessionDep) -> TenantContext | None:
    """The signed-in user's tenant context, or None for an anonymous visitor (who is sent to sign in)."""
    if principal is None or principal.user is None:
        return None
    return await current_tenant(request, principal.user, db)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    return redirect("login?" + urlencode({"next": target}))


def parse_bot_id(raw: str) -> uuid.UUID:
    """Page URLs are typed by people: a malformed id is a plain 404 page, not a validation error."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound() from None


async def page_bot(
    request: Request, principal: OptionalPrincipal, db: SessionDep, raw_bot_id: str, minimum: Role = Role.viewer
) -> tuple[TenantContext, Bot] | Response:
    """The caller's tenant and the path's bot, loaded with at least ``minimum``; anonymous visitors sign in first."""
    ctx = await page_tenant(request, principal, db)
    if ctx is None:
        return login_redirect(request)
    return ctx, await service.get_bot(db, ctx, parse_bot_id(raw_bot_id), minimum=minimum)


def notice(request: Request) -> dict[str, str] | None:
    key = request.query_params.get("done", "")
    return {"kind": "success", "message": gettext(NOTICES[key])} if key in NOTICES else None


def language_options() -> list[tuple[str, str]]:
    # Languages are listed by their own names, as in the language switcher.
    return [(code, LANGUAGE_NAMES[code]) for code in LOCALES]


def bot_url(bot: Bot, done: str | None = None) -> str:
    return f"bots/{bot.id}" + (f"?done={done}" if done else "")


# --------------------------------------------------------------------------------------------------------------
# Form values <-> schemas


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def values_from_form(form: FormData) -> FormValues:
    """What the visitor typed, as the template shows it again when something is wrong."""
    values: FormValues = {name: _text(form, name) for name in TEXT_INPUTS}
    values.update({name: form.get(name) is not None for name in CHECKBOXES})
    values["allowed_origins"] = _text(form, "allowed_origins")
    values.update({f"widget_{name}": _text(form, f"widget_{name}") for name in WIDGET_INPUTS})
    return values


def values_from_bot(bot: Bot) -> FormValues:
    widget = WidgetSettings.from_stored(bot.widget)
    values: FormValues = {name: getattr(bot, name) for name in (*TEXT_INPUTS, *CHECKBOXES)}
    values["allowed_origins"] = "\n".join(bot.allowed_origins or [])
    values.update({f"widget_{name}": getattr(widget, name) or "" for name in WIDGET_INPUTS})
    return values


def origin_lines(values: FormValues) -> list[str]:
    return [line.strip() for line in str(values.get("allowed_origins", "")).splitlines() if line.strip()]


def payload(values: FormValues, *, full: bool) -> dict[str, Any]:
    """The API body the form stands for; the new-bot form (``full=False``) has no widget or origins fields."""
    data: dict[str, Any] = {name: values[name] for name in TEXT_INPUTS}
    data["strict"] = values["strict"]
    if full:
        data["is_enabled"] = values["is_enabled"]
        data["allowed_origins"] = origin_lines(values)
        widget = {name: values[f"widget_{name}"] for name in WIDGET_INPUTS}
        widget["language"] = widget["language"] or None
        data["widget"] = widget
    return data


def field_errors(exc: ValidationError, values: FormValues) -> FieldErrors:
    """Translated messages per form field, from the same mapping the API uses."""
    origins = origin_lines(values)
    errors: FieldErrors = {}
    for location, msgid in validation_error(RequestValidationError(exc.errors())).fields:
        parts = location.split(".")
        message = gettext(msgid)
        if parts[0] == "widget" and len(parts) > 1:
            name = f"widget_{parts[1]}"
        elif parts[0] == "allowed_origins" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(origins):
            name = "allowed_origins"
            message = f"{origins[int(parts[1])]}: {message}"
        else:
            name = parts[0]
        errors.setdefault(name, []).append(message)
    return errors


def app_error_alert(exc: AppError) -> dict[str, str]:
    return {"kind": "error", "message": gettext(exc.message, **exc.params)}


# --------------------------------------------------------------------------------------------------------------
# Dashboard


@router.get("/{lang}/dashboard")
async def dashboard(request: Request, lang: Lang, principal: OptionalPrincipal, db: SessionDep) -> Response:
    """The user's bots as cards, with the plan's bot allowance."""
    ctx = await page_tenant(request, principal, db)
    if ctx is None:
        return login_redirect(request)
    page = page_number(request)
    bots, total = await service.list_bots(db, ctx, limit=DASHBOARD_PAGE_SIZE, offset=(page - 1) * DASHBOARD_PAGE_SIZE)
    return render(
        request,
        "dashboard.html",
        {
            "bots": bots,
            "total": total,
            "page": page,
            "has_next": page * DASHBOARD_PAGE_SIZE < total,
            "quota": await bot_quota(db, ctx.tenant),
            "can_create": ctx.role is not None and ROLE_RANK[ctx.role] >= ROLE_RANK[Role.editor],
            "tenant": ctx.tenant,
            "avatar_path": avatar_path,
            "flash": notice(request),
        },
    )


# --------------------------------------------------------------------------------------------------------------
# New bot


def render_new(
    request: Request, values: FormValues, errors: FieldErrors, *, alert: dict[str, str] | None = None, status: int = 200
) -> HTMLResponse:
    context = {"values": values, "errors": errors, "flash": alert, "language_options": language_options()}
    return render(request, "bots/new.html", context, status_code=status)


@router.get("/{lang}/bots/new")
async def new_bot_form(request: Request, lang: Lang, principal: OptionalPrincipal, db: SessionDep) -> Response:
    ctx = await page_tenant(request, principal, db)
    if ctx is None:
        return login_redirect(request)
    ctx.require_role(Role.editor)
    values: FormValues = {name: "" for name in TEXT_INPUTS} | {"language": lang, "strict": True}
    quota = await bot_quota(db, ctx.tenant)
    alert = None
    if quota.reached and quota.limit is not None:
        alert = app_error_alert(bot_limit_reached(quota.limit))
    return render_new(request, values, {}, alert=alert)


@router.post("/{lang}/bots/new")
async def create_bot(request: Request, lang: Lang, principal: OptionalPrincipal, db: SessionDep) -> Response:
    ctx = await page_tenant(request, principal, db)
    if ctx is None:
        return login_redirect(request)
    ctx.require_role(Role.editor)
    values = values_from_form(await request.form())
    try:
        data = BotCreate.model_validate(payload(values, full=False))
    except ValidationError as exc:
        return render_new(request, values, field_errors(exc, values), status=422)
    try:
        bot = await service.create_bot(db, ctx, data, ip=client_ip(request))
    except FORM_ERRORS as exc:
        return render_new(request, values, {}, alert=app_error_alert(exc), status=exc.status_code)
    return redirect(bot_url(bot, "created"))


# --------------------------------------------------------------------------------------------------------------
# Bot page


async def render_bot(
    request: Request,
    db: SessionDep,
    ctx: TenantContext,
    bot: Bot,
    *,
    values: FormValues | None = None,
    errors: FieldErrors | None = None,
    avatar_errors: list[str] | None = None,
    alert: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    role = await bot_role(db, ctx, bot)
    sections = bot_sections()
    section_data = {
        section.key: (await section.context(db, ctx, bot)) if section.context else {} for section in sections
    }
    context = {
        "bot": bot,
        "role": role,
        "can_edit": ROLE_RANK[role] >= ROLE_RANK[Role.editor],
        "can_delete": role == Role.owner,
        "values": values or values_from_bot(bot),
        "errors": errors or {},
        "avatar_errors": avatar_errors or [],
        "avatar_url": avatar_path(bot),
        "max_avatar_mb": max_avatar_megabytes(),
        "sections": sections,
        "language_options": language_options(),
        "sections_data": section_data,
        "flash": alert or notice(request),
    }
    return render(request, "bots/detail.html", context, status_code=status)


@router.get("/{lang}/bots/{bot_id}")
async def bot_page(request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep) -> Response:
    found = await page_bot(request, principal, db, bot_id)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    return await render_bot(request, db, ctx, bot)


@router.post("/{lang}/bots/{bot_id}")
async def save_bot(request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    values = values_from_form(await request.form())
    try:
        data = BotUpdate.model_validate(payload(values, full=True))
    except ValidationError as exc:
        return await render_bot(request, db, ctx, bot, values=values, errors=field_errors(exc, values), status=422)
    await service.update_bot(db, ctx, bot, data, ip=client_ip(request))
    return redirect(bot_url(bot, "saved"))


@router.post("/{lang}/bots/{bot_id}/avatar")
async def upload_avatar(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    upload = (await request.form()).get("file")
    # As in the API: one byte past the limit is enough for the service to refuse it.
    raw = await upload.read(get_settings().max_avatar_bytes + 1) if isinstance(upload, UploadFile) else b""
    try:
        await service.set_avatar(db, ctx, bot, raw, ip=client_ip(request))
    except FORM_ERRORS as exc:
        messages = [gettext(message) for _field, message in exc.fields] or [gettext(exc.message, **exc.params)]
        return await render_bot(request, db, ctx, bot, avatar_errors=messages, status=exc.status_code)
    return redirect(bot_url(bot, "avatar"))


@router.post("/{lang}/bots/{bot_id}/avatar/delete")
async def remove_avatar(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    await service.remove_avatar(db, ctx, bot, ip=client_ip(request))
    return redirect(bot_url(bot, "avatar-removed"))


# --------------------------------------------------------------------------------------------------------------
# Delete, with a confirmation page so it works without JavaScript


@router.get("/{lang}/bots/{bot_id}/delete")
async def confirm_delete(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.owner)
    if isinstance(found, Response):
        return found
    _ctx, bot = found
    return render(request, "bots/delete.html", {"bot": bot})


@router.post("/{lang}/bots/{bot_id}/delete")
async def delete_bot(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.owner)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    await service.delete_bot(db, ctx, bot, ip=client_ip(request))
    return redirect("dashboard?done=deleted")
