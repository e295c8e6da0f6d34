"""Knowledge REST API: add sources of every kind, list, inspect and delete them, edit Q&A pairs, re-sync websites;
the test console (``/ask``), unanswered questions and the abuse log.

Every endpoint authorizes through a dependency (the bot, or the bot and one of its sources, with the role the
endpoint needs: viewers read, editors change), so another tenant's id is a 404 before the body is even read, and
leaves the rules to ``knowledge.service`` and ``knowledge.console``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import Response

from control_plane.bots.auth import EditableBot, ReadableBot
from control_plane.kit.db import SessionDep
from control_plane.kit.paging import Offset
from control_plane.kit.tenancy import CurrentTenant, get_bot
from control_plane.knowledge import console, service
from control_plane.knowledge.schemas import (
    AbuseEntryOut,
    AbuseLog,
    AskRequest,
    AskResponse,
    FaqItemUpdate,
    FaqSourceCreate,
    ScheduleUpdate,
    SourceDetail,
    SourceList,
    SourceQueued,
    TextSourceCreate,
    UnansweredAnswer,
    UnansweredList,
    UrlSourceCreate,
)
from control_plane.models import Bot, KnowledgeSource, Role

api = APIRouter(prefix="/api/v1/bots/{bot_id}", tags=["knowledge"])


@dataclass(slots=True)
class BotSource:
    bot: Bot
    source: KnowledgeSource


def source_with_role(minimum: Role, *, with_text: bool = False) -> Callable[..., Awaitable[BotSource]]:
    async def dependency(bot_id: uuid.UUID, source_id: uuid.UUID, ctx: CurrentTenant, db: SessionDep) -> BotSource:
        bot = await get_bot(db, ctx, bot_id, minimum=minimum)
        return BotSource(bot, await service.get_source(db, ctx, bot, source_id, with_text=with_text))

    return dependency


ReadableSource = Annotated[BotSource, Depends(source_with_role(Role.viewer, with_text=True))]
EditableSource = Annotated[BotSource, Depends(source_with_role(Role.editor))]
Limit500 = Annotated[int, Query(ge=1, le=500)]
Limit200 = Annotated[int, Query(ge=1, le=200)]


def queued(source: KnowledgeSource) -> SourceQueued:
    return SourceQueued(id=source.id, status=source.status)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# Sources


@api.get("/knowledge")
async def list_sources(
    bot: ReadableBot,
    ctx: CurrentTenant,
    db: SessionDep,
    limit: Limit500 = 100,
    offset: Offset = 0,
) -> SourceList:
    """The bot's knowledge sources, newest first, with their status and progress (poll this while ingesting)."""
    sources, total = await service.list_sources(db, ctx, bot, limit=limit, offset=offset)
    return SourceList(items=[service.source_out(source) for source in sources], total=total)


@api.post("/knowledge/text", status_code=202)
async def add_text(body: TextSourceCreate, bot: EditableBot, ctx: CurrentTenant, db: SessionDep) -> SourceQueued:
    """Add plain text (Markdown headings, lists and tables are understood). 409 when the bot already has it."""
    return queued(await service.add_text(db, ctx, bot, body))


@api.post("/knowledge/faq", status_code=202)
async def add_faq(body: FaqSourceCreate, bot: EditableBot, ctx: CurrentTenant, db: SessionDep) -> SourceQueued:
    """Add questions with their answers; each pair is answered as a whole."""
    return queued(await service.add_faq(db, ctx, bot, body))


@api.post("/knowledge/files", status_code=202)
async def add_file(
    bot: EditableBot,
    ctx: CurrentTenant,
    db: SessionDep,
    file: Annotated[UploadFile, File(description="PDF, DOCX, XLSX, CSV, TXT/Markdown or HTML.")],
) -> SourceQueued:
    """Upload a file (multipart field ``file``). The type is read from the content; the size is limited (413)."""
    return queued(await service.add_file(db, ctx, bot, await service.read_upload(file), file.filename))


@api.post("/knowledge/url", status_code=202)
async def add_url(body: UrlSourceCreate, bot: EditableBot, ctx: CurrentTenant, db: SessionDep) -> SourceQueued:
    """Add a web page, or with ``crawl`` the pages of its site (same site, robots.txt respected, ``max_pages``)."""
    return queued(await service.add_url(db, ctx, bot, body))


@api.get("/knowledge/{source_id}")
async def get_source(
    ref: ReadableSource,
    ctx: CurrentTenant,
    db: SessionDep,
    chunk_limit: Limit500 = 100,
    chunk_offset: Offset = 0,
) -> SourceDetail:
    """One source with a preview of its extracted text, its chunks (paged) and, for Q&A sources, its pairs."""
    return await service.source_detail(db, ctx, ref.source, chunk_limit=chunk_limit, chunk_offset=chunk_offset)


@api.patch("/knowledge/{source_id}")
async def update_source(body: ScheduleUpdate, ref: EditableSource, ctx: CurrentTenant, db: SessionDep) -> SourceDetail:
    """Set how often a web page source is read again (``sync_interval_hours``, null for never)."""
    source = await service.set_schedule(db, ctx, ref.bot, ref.source.id, body)
    return await service.source_detail(db, ctx, source)


@api.delete("/knowledge/{source_id}", status_code=204)
async def delete_source(ref: EditableSource, ctx: CurrentTenant, db: SessionDep) -> Response:
    """Delete a source; the bot stops using it once its knowledge is rebuilt (a few seconds)."""
    await service.delete_source(db, ctx, ref.bot, ref.source)
    return Response(status_code=204)


@api.post("/knowledge/{source_id}/resync", status_code=202)
async def resync_source(ref: EditableSource, ctx: CurrentTenant, db: SessionDep) -> SourceQueued:
    """Read a web page source again now; it keeps answering from the current version until the new one is ready."""
    return queued(await service.resync(db, ctx, ref.bot, ref.source.id))


@api.patch("/knowledge/{source_id}/faq/{index}")
async def update_faq_item(
    index: int, body: FaqItemUpdate, ref: EditableSource, ctx: CurrentTenant, db: SessionDep
) -> SourceDetail:
    """Edit one Q&A pair (``index`` counts from 0); the source is chunked again."""
    source = await service.update_faq_item(db, ctx, ref.bot, ref.source.id, index, body)
    return await service.source_detail(db, ctx, source)


@api.delete("/knowledge/{source_id}/faq/{index}", status_code=204)
async def delete_faq_item(index: int, ref: EditableSource, ctx: CurrentTenant, db: SessionDep) -> Response:
    """Delete one Q&A pair; deleting the last one deletes the source."""
    await service.delete_faq_item(db, ctx, ref.bot, ref.source.id, index)
    return Response(status_code=204)


# --------------------------------------------------------------------------------------------------------------
# Test console, unanswered questions, abuse log


@api.post("/ask")
async def ask(body: AskRequest, bot: ReadableBot, ctx: CurrentTenant, db: SessionDep) -> AskResponse:
    """Ask the bot as a customer would: the answer, the passages retrieved (best first) and their scores.

    Does not count toward the daily message limit; limited per user per minute instead (429).
    """
    return await console.ask(db, ctx, bot, body)


@api.get("/unanswered")
async def list_unanswered(
    bot: ReadableBot,
    ctx: CurrentTenant,
    db: SessionDep,
    limit: Limit200 = 50,
    offset: Offset = 0,
) -> UnansweredList:
    """Questions that got the fallback answer in the last 90 days, grouped, most frequent first."""
    items, total = await service.unanswered(db, ctx, bot, limit=limit, offset=offset)
    return UnansweredList(items=items, total=total)


@api.post("/unanswered/answer", status_code=202)
async def answer_unanswered(
    body: UnansweredAnswer, bot: EditableBot, ctx: CurrentTenant, db: SessionDep
) -> SourceQueued:
    """Answer a question in one step: the pair joins the bot's Q&A source for such answers and is ingested."""
    return queued(await service.answer_unanswered(db, ctx, bot, body))


@api.get("/abuse-log")
async def abuse_log(
    bot: ReadableBot,
    ctx: CurrentTenant,
    db: SessionDep,
    limit: Limit200 = 50,
    offset: Offset = 0,
) -> AbuseLog:
    """Messages the content filter refused (abuse, spam, harmful, too long), newest first."""
    entries, total = await console.abuse_log(db, ctx, bot, limit=limit, offset=offset)
    return AbuseLog(items=[AbuseEntryOut.model_validate(entry, from_attributes=True) for entry in entries], total=total)


router = APIRouter()
router.include_router(api)
