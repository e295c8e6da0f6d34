"""Knowledge HTML pages: the bot's sources (list, add forms, one source's text and chunks, Q&A editing, deletion),
the test console, unanswered questions, and the bot page's Knowledge / Test console / Blocked messages sections.

Forms post back to their own page and go through ``knowledge.service`` / ``knowledge.console`` exactly like the
API; cookie-authenticated posts are CSRF-checked by the auth dependency before a handler runs. Every handler loads
the bot (and the source) with the role it needs before reading the form, so another tenant's ids are a 404 page.
Pages work without JavaScript; with it, the source list follows ingestion progress and Q&A rows can be added.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from bot_runtime.i18n import N_, gettext, ngettext
from control_plane.accounts.auth import OptionalPrincipal
from control_plane.bots.pages import page_bot
from control_plane.bots.sections import BotSection, register_section
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import AppError, NotFound, ValidationFailed, validation_error
from control_plane.kit.pages import Lang, redirect
from control_plane.kit.templating import render
from control_plane.kit.tenancy import ROLE_RANK, TenantContext, bot_role
from control_plane.knowledge import console, repository, schemas, service
from control_plane.models import Bot, KnowledgeSource, Role
from control_plane.settings import get_settings

router = APIRouter(include_in_schema=False)

FAQ_BLANK_ROWS = 5
SCHEDULE_CHOICES = (None, 6, 12, 24, 72, 168)
NOTICES = {
    "added": N_("Added. The bot learns it in a moment; the status below shows the progress."),
    "deleted": N_("The source was deleted."),
    "saved": N_("Changes saved."),
    "resync": N_("The page will be read again in a moment."),
    "answered": N_("The answer was added to the knowledge base."),
}
KIND_LABELS = {
    "text": N_("Text"),
    "faq": N_("Questions and answers"),
    "file": N_("File"),
    "url": N_("Web page"),
}
STATUS_LABELS = {
    "queued": N_("Waiting"),
    "processing": N_("Learning"),
    "ready": N_("Ready"),
    "failed": N_("Failed"),
}
ABUSE_REASONS = {
    "abuse": N_("Abuse"),
    "spam": N_("Spam"),
    "harmful": N_("Harmful"),
    "too_long": N_("Too long"),
    "provider_safety": N_("Refused by the AI model"),
}

FieldErrors = dict[str, list[str]]


# --------------------------------------------------------------------------------------------------------------
# Helpers


def parse_source_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound() from None


def knowledge_url(bot: Bot, tail: str = "", done: str | None = None) -> str:
    return f"bots/{bot.id}/knowledge{tail}" + (f"?done={done}" if done else "")


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def notice(request: Request) -> dict[str, str] | None:
    key = request.query_params.get("done", "")
    return {"kind": "success", "message": gettext(NOTICES[key])} if key in NOTICES else None


def alert_for(exc: AppError) -> dict[str, str]:
    return {"kind": "error", "message": gettext(exc.message, **exc.params)}


def field_errors(exc: ValidationError) -> FieldErrors:
    errors: FieldErrors = {}
    for location, msgid in validation_error(RequestValidationError(exc.errors())).fields:
        errors.setdefault(location, []).append(gettext(msgid))
    return errors


def error_alert(exc: ValidationError) -> dict[str, str]:
    """All field errors in one alert, for forms too small to show them beside their fields."""
    message = "; ".join(message for messages in field_errors(exc).values() for message in messages)
    return {"kind": "error", "message": message}


async def _can_edit(db: AsyncSession, ctx: TenantContext, bot: Bot) -> bool:
    return ROLE_RANK[await bot_role(db, ctx, bot)] >= ROLE_RANK[Role.editor]


def schedule_options() -> list[tuple[str | int, str]]:
    """The re-sync choices, labelled in the page's language."""
    options: list[tuple[str | int, str]] = []
    for hours in SCHEDULE_CHOICES:
        if hours is None:
            options.append(("", gettext("Never")))
        elif hours % 24 == 0:
            options.append((hours, ngettext("Every day", "Every %(num)s days", hours // 24)))
        else:
            options.append((hours, ngettext("Every hour", "Every %(num)s hours", hours)))
    return options


def labels() -> dict[str, Any]:
    """Label tables the templates translate with ``_()``."""
    return {"kind_labels": KIND_LABELS, "status_labels": STATUS_LABELS, "abuse_reasons": ABUSE_REASONS}


# --------------------------------------------------------------------------------------------------------------
# Source list and the add forms


async def render_list(
    request: Request,
    db: AsyncSession,
    ctx: TenantContext,
    bot: Bot,
    *,
    form: str | None = None,
    values: dict[str, Any] | None = None,
    errors: FieldErrors | None = None,
    alert: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    sources, total = await service.list_sources(db, ctx, bot, limit=500)
    values = values or {}
    faq_rows = values.get("faq_rows") or [{"question": "", "answer": ""} for _ in range(FAQ_BLANK_ROWS)]
    settings = get_settings()
    context = {
        "bot": bot,
        "active": "knowledge",
        "can_edit": await _can_edit(db, ctx, bot),
        "sources": [service.source_out(source) for source in sources],
        "total": total,
        "polling": any(source.status in ("queued", "processing") for source in sources),
        "form": form,
        "values": values,
        "errors": errors or {},
        "faq_rows": faq_rows,
        "max_upload_mb": f"{settings.max_upload_bytes / (1024 * 1024):g}",
        "default_max_pages": service.DEFAULT_MAX_PAGES,
        "max_pages_limit": schemas.MAX_PAGES_LIMIT,
        "flash": alert or notice(request),
        **labels(),
    }
    return render(request, "knowledge/list.html", context, status_code=status)


@router.get("/{lang}/bots/{bot_id}/knowledge")
async def knowledge_page(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.viewer)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    return await render_list(request, db, ctx, bot)


async def _add(
    request: Request,
    db: AsyncSession,
    ctx: TenantContext,
    bot: Bot,
    form_name: str,
    values: dict[str, Any],
    build: Any,
) -> Response:
    """Validate a form into its API schema, call the service, and redirect or show the form again with errors."""
    try:
        await build()
    except ValidationError as exc:
        return await render_list(
            request, db, ctx, bot, form=form_name, values=values, errors=field_errors(exc), status=422
        )
    except (service.SourceRejected, service.DuplicateSource, service.UploadTooLarge, ValidationFailed) as exc:
        return await render_list(
            request, db, ctx, bot, form=form_name, values=values, alert=alert_for(exc), status=exc.status_code
        )
    return redirect(knowledge_url(bot, done="added"))


@router.post("/{lang}/bots/{bot_id}/knowledge/text")
async def add_text(request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    form = await request.form()
    values = {"text_title": _text(form, "title"), "text_text": _text(form, "text")}

    async def build() -> None:
        data = schemas.TextSourceCreate.model_validate({"title": values["text_title"], "text": values["text_text"]})
        await service.add_text(db, ctx, bot, data)

    return await _add(request, db, ctx, bot, "text", values, build)


def faq_rows_from_form(form: FormData) -> list[dict[str, str]]:
    questions = [value if isinstance(value, str) else "" for value in form.getlist("question")]
    answers = [value if isinstance(value, str) else "" for value in form.getlist("answer")]
    rows = [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=False)]
    return rows or [{"question": "", "answer": ""}]


@router.post("/{lang}/bots/{bot_id}/knowledge/faq")
async def add_faq(request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    form = await request.form()
    rows = faq_rows_from_form(form)
    values = {"faq_title": _text(form, "title"), "faq_rows": rows}

    async def build() -> None:
        # Blank rows are the form's spare rows, not mistakes; a half-filled row is.
        items = [row for row in rows if row["question"].strip() or row["answer"].strip()]
        data = schemas.FaqSourceCreate.model_validate({"title": values["faq_title"], "items": items})
        await service.add_faq(db, ctx, bot, data)

    return await _add(request, db, ctx, bot, "faq", values, build)


@router.post("/{lang}/bots/{bot_id}/knowledge/files")
async def add_file(request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    upload = (await request.form()).get("file")

    async def build() -> None:
        if isinstance(upload, UploadFile):
            await service.add_file(db, ctx, bot, await service.read_upload(upload), upload.filename)
        else:  # no file chosen: refused like an empty one
            await service.add_file(db, ctx, bot, b"", None)

    return await _add(request, db, ctx, bot, "file", {}, build)


@router.post("/{lang}/bots/{bot_id}/knowledge/url")
async def add_url(request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    form = await request.form()
    values = {
        "url_url": _text(form, "url"),
        "url_crawl": form.get("crawl") is not None,
        "url_max_pages": _text(form, "max_pages"),
    }

    async def build() -> None:
        body: dict[str, Any] = {"url": values["url_url"], "crawl": values["url_crawl"]}
        if values["url_crawl"] and values["url_max_pages"].strip():
            body["max_pages"] = values["url_max_pages"].strip()
        await service.add_url(db, ctx, bot, schemas.UrlSourceCreate.model_validate(body))

    return await _add(request, db, ctx, bot, "url", values, build)


# --------------------------------------------------------------------------------------------------------------
# One source


async def _page_source(
    request: Request,
    principal: OptionalPrincipal,
    db: SessionDep,
    raw_bot_id: str,
    raw_source_id: str,
    minimum: Role,
    *,
    with_text: bool = False,
) -> tuple[TenantContext, Bot, KnowledgeSource] | Response:
    found = await page_bot(request, principal, db, raw_bot_id, minimum)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    source = await service.get_source(db, ctx, bot, parse_source_id(raw_source_id), with_text=with_text)
    return ctx, bot, source


async def render_source(
    request: Request,
    db: AsyncSession,
    ctx: TenantContext,
    bot: Bot,
    source: KnowledgeSource,
    *,
    alert: dict[str, str] | None = None,
    errors: dict[int, FieldErrors] | None = None,
    status: int = 200,
) -> HTMLResponse:
    detail = await service.source_detail(db, ctx, source, chunk_limit=500)
    context = {
        "bot": bot,
        "active": "knowledge",
        "can_edit": await _can_edit(db, ctx, bot),
        "source": detail,
        "pair_errors": errors or {},
        "schedule_options": schedule_options(),
        "polling": detail.status in ("queued", "processing"),
        "flash": alert or notice(request),
        **labels(),
    }
    return render(request, "knowledge/source.html", context, status_code=status)


@router.get("/{lang}/bots/{bot_id}/knowledge/{source_id}")
async def source_page(
    request: Request, lang: Lang, bot_id: str, source_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await _page_source(request, principal, db, bot_id, source_id, Role.viewer, with_text=True)
    if isinstance(found, Response):
        return found
    return await render_source(request, db, *found)


@router.get("/{lang}/bots/{bot_id}/knowledge/{source_id}/delete")
async def confirm_delete(
    request: Request, lang: Lang, bot_id: str, source_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await _page_source(request, principal, db, bot_id, source_id, Role.editor)
    if isinstance(found, Response):
        return found
    _ctx, bot, source = found
    return render(request, "knowledge/delete.html", {"bot": bot, "source": source})


@router.post("/{lang}/bots/{bot_id}/knowledge/{source_id}/delete")
async def delete_source(
    request: Request, lang: Lang, bot_id: str, source_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await _page_source(request, principal, db, bot_id, source_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot, source = found
    await service.delete_source(db, ctx, bot, source)
    return redirect(knowledge_url(bot, done="deleted"))


@router.post("/{lang}/bots/{bot_id}/knowledge/{source_id}/faq/{index}")
async def edit_pair(
    request: Request,
    lang: Lang,
    bot_id: str,
    source_id: str,
    index: int,
    principal: OptionalPrincipal,
    db: SessionDep,
) -> Response:
    found = await _page_source(request, principal, db, bot_id, source_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot, source = found
    form = await request.form()
    try:
        data = schemas.FaqItemUpdate.model_validate(
            {"question": _text(form, "question"), "answer": _text(form, "answer")}
        )
        source = await service.update_faq_item(db, ctx, bot, source.id, index, data)
    except ValidationError as exc:
        return await render_source(request, db, ctx, bot, source, errors={index: field_errors(exc)}, status=422)
    except (service.DuplicateSource, service.NotFaqSource) as exc:
        return await render_source(request, db, ctx, bot, source, alert=alert_for(exc), status=exc.status_code)
    return redirect(knowledge_url(bot, f"/{source.id}", done="saved"))


@router.post("/{lang}/bots/{bot_id}/knowledge/{source_id}/faq/{index}/delete")
async def delete_pair(
    request: Request,
    lang: Lang,
    bot_id: str,
    source_id: str,
    index: int,
    principal: OptionalPrincipal,
    db: SessionDep,
) -> Response:
    found = await _page_source(request, principal, db, bot_id, source_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot, source = found
    try:
        remaining = await service.delete_faq_item(db, ctx, bot, source.id, index)
    except (service.DuplicateSource, service.NotFaqSource) as exc:
        return await render_source(request, db, ctx, bot, source, alert=alert_for(exc), status=exc.status_code)
    if remaining is None:
        return redirect(knowledge_url(bot, done="deleted"))
    return redirect(knowledge_url(bot, f"/{source.id}", done="saved"))


@router.post("/{lang}/bots/{bot_id}/knowledge/{source_id}/resync")
async def resync(
    request: Request, lang: Lang, bot_id: str, source_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await _page_source(request, principal, db, bot_id, source_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot, source = found
    try:
        await service.resync(db, ctx, bot, source.id)
    except service.NotUrlSource as exc:
        return await render_source(request, db, ctx, bot, source, alert=alert_for(exc), status=exc.status_code)
    return redirect(knowledge_url(bot, f"/{source.id}", done="resync"))


@router.post("/{lang}/bots/{bot_id}/knowledge/{source_id}/schedule")
async def schedule(
    request: Request, lang: Lang, bot_id: str, source_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await _page_source(request, principal, db, bot_id, source_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot, source = found
    raw = _text(await request.form(), "sync_interval_hours").strip()
    try:
        data = schemas.ScheduleUpdate.model_validate({"sync_interval_hours": raw or None})
        await service.set_schedule(db, ctx, bot, source.id, data)
    except ValidationError as exc:
        return await render_source(request, db, ctx, bot, source, alert=error_alert(exc), status=422)
    except service.NotUrlSource as exc:
        return await render_source(request, db, ctx, bot, source, alert=alert_for(exc), status=exc.status_code)
    return redirect(knowledge_url(bot, f"/{source.id}", done="saved"))


# --------------------------------------------------------------------------------------------------------------
# Test console


async def render_console(
    request: Request,
    db: AsyncSession,
    ctx: TenantContext,
    bot: Bot,
    *,
    conversation_id: uuid.UUID | None = None,
    result: schemas.AskResponse | None = None,
    question: str = "",
    errors: FieldErrors | None = None,
    alert: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    messages = await console.conversation_messages(db, ctx, bot, conversation_id) if conversation_id else []
    asked = ""
    if result is not None and len(messages) >= 2:
        # The latest exchange is shown in the answer card with its passages, not twice.
        asked = messages[-2].text
        messages = messages[:-2]
    artifact = await repository.current_artifact(db, ctx, bot.id)
    context = {
        "bot": bot,
        "active": "console",
        "conversation_id": conversation_id if (messages or result) else None,
        "messages": messages,
        "result": result,
        "asked": asked,
        "question": question,
        "errors": errors or {},
        "has_knowledge": bool(artifact and artifact.chunk_count),
        "flash": alert,
        **labels(),
    }
    return render(request, "knowledge/console.html", context, status_code=status)


def _conversation_param(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


@router.get("/{lang}/bots/{bot_id}/console")
async def console_page(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.viewer)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    conversation_id = _conversation_param(request.query_params.get("conversation"))
    return await render_console(request, db, ctx, bot, conversation_id=conversation_id)


@router.post("/{lang}/bots/{bot_id}/console")
async def console_ask(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.viewer)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    form = await request.form()
    question = _text(form, "question")
    conversation_id = _conversation_param(_text(form, "conversation_id"))
    try:
        data = schemas.AskRequest.model_validate({"question": question, "conversation_id": conversation_id})
        result = await console.ask(db, ctx, bot, data)
    except ValidationError as exc:
        return await render_console(
            request,
            db,
            ctx,
            bot,
            conversation_id=conversation_id,
            question=question,
            errors=field_errors(exc),
            status=422,
        )
    except AppError as exc:
        if exc.status_code not in (404, 429):
            raise
        return await render_console(
            request,
            db,
            ctx,
            bot,
            conversation_id=None if exc.status_code == 404 else conversation_id,
            question=question,
            alert=alert_for(exc),
            status=exc.status_code,
        )
    return await render_console(request, db, ctx, bot, conversation_id=result.conversation_id, result=result)


# --------------------------------------------------------------------------------------------------------------
# Unanswered questions


async def render_unanswered(
    request: Request,
    db: AsyncSession,
    ctx: TenantContext,
    bot: Bot,
    *,
    alert: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    items, total = await service.unanswered(db, ctx, bot, limit=200)
    context = {
        "bot": bot,
        "active": "unanswered",
        "can_edit": await _can_edit(db, ctx, bot),
        "items": items,
        "total": total,
        "flash": alert or notice(request),
    }
    return render(request, "knowledge/unanswered.html", context, status_code=status)


@router.get("/{lang}/bots/{bot_id}/unanswered")
async def unanswered_page(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.viewer)
    if isinstance(found, Response):
        return found
    return await render_unanswered(request, db, *found)


@router.post("/{lang}/bots/{bot_id}/unanswered/answer")
async def answer_unanswered(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    form = await request.form()
    try:
        data = schemas.UnansweredAnswer.model_validate(
            {"question": _text(form, "question"), "answer": _text(form, "answer")}
        )
        await service.answer_unanswered(db, ctx, bot, data)
    except ValidationError as exc:
        return await render_unanswered(request, db, ctx, bot, alert=error_alert(exc), status=422)
    except service.DuplicateSource as exc:
        # The same pair is already a source of its own: say so on the page, not as a JSON body.
        return await render_unanswered(request, db, ctx, bot, alert=alert_for(exc), status=exc.status_code)
    return redirect(f"bots/{bot.id}/unanswered?done=answered")


# --------------------------------------------------------------------------------------------------------------
# Sections of the bot page


async def knowledge_section(db: AsyncSession, ctx: TenantContext, bot: Bot) -> dict[str, Any]:
    # The bot page shows five sources and the counts per status: counted in SQL, not by loading every row.
    sources, total = await service.list_sources(db, ctx, bot, limit=5)
    counts = await repository.status_counts(db, ctx, bot.id)
    return {"sources": [service.source_out(s) for s in sources], "total": total, "counts": counts, **labels()}


async def console_section(db: AsyncSession, ctx: TenantContext, bot: Bot) -> dict[str, Any]:
    _items, unanswered = await service.unanswered(db, ctx, bot, limit=1)
    return {"unanswered": unanswered}


async def abuse_section(db: AsyncSession, ctx: TenantContext, bot: Bot) -> dict[str, Any]:
    entries, total = await console.abuse_log(db, ctx, bot, limit=10)
    return {"entries": entries, "total": total, **labels()}


register_section(
    BotSection("knowledge", N_("Knowledge"), "knowledge/section_knowledge.html", order=10, context=knowledge_section)
)
register_section(
    BotSection("console", N_("Test console"), "knowledge/section_console.html", order=30, context=console_section)
)
register_section(
    BotSection("abuse", N_("Blocked messages"), "knowledge/section_abuse.html", order=35, context=abuse_section)
)
