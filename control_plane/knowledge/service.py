"""Knowledge rules: adding sources of each kind, duplicates, deleting, editing Q&A pairs, re-syncs and schedules.

Services flush and never commit (the request owns the transaction); ingestion is queued with
``enqueue_after_commit``, so a job never starts before its source row exists and a rolled-back request queues
nothing. Functions that take a ``Bot`` expect it to have been loaded with the role they need (see
``control_plane.bots.auth``): editors write, viewers read.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from bot_runtime.answering.text import normalize
from bot_runtime.i18n import N_, gettext
from control_plane.jobs.queue import enqueue_after_commit
from control_plane.kit.errors import AppError, Conflict, NotFound, PayloadTooLarge
from control_plane.kit.tenancy import TenantContext
from control_plane.knowledge import repository, schemas
from control_plane.knowledge.extract import (
    FILE_TOO_LARGE,
    ExtractionError,
    content_hash,
    detect_kind,
    format_megabytes,
)
from control_plane.models import Bot, KnowledgeChunk, KnowledgeSource
from control_plane.settings import get_settings

QUEUE = "ingestion"
DEFAULT_MAX_PAGES = 20
TEXT_PREVIEW_CHARS = 20_000
UNANSWERED_WINDOW_DAYS = 90
UNANSWERED_SCAN_LIMIT = 5_000
DETECTED_MIME = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
    "text": "text/plain",
    "html": "text/html",
}

FAQ_TITLE = N_("Questions and answers")
UNANSWERED_TITLE = N_("Answers to customers' questions")


# --------------------------------------------------------------------------------------------------------------
# Errors


class SourceRejected(AppError):
    """A source that cannot be accepted (empty, unsupported type, unsafe URL ...); carries the extractor's msgid."""

    status_code = 400
    code = "source_rejected"

    @classmethod
    def from_extraction(cls, error: ExtractionError) -> SourceRejected:
        rejected = cls(error.message, params=error.params)
        rejected.code = error.code
        return rejected


class DuplicateSource(Conflict):
    code = "duplicate_source"
    message = N_("This is already in the knowledge base as “%(title)s”.")

    def __init__(self, existing: KnowledgeSource) -> None:
        super().__init__(params={"title": existing.title or "—"})
        self.existing_id = existing.id

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["error"]["source_id"] = str(self.existing_id)
        return body


class UploadTooLarge(PayloadTooLarge):
    message = FILE_TOO_LARGE

    def __init__(self) -> None:
        super().__init__(params={"max_mb": format_megabytes(get_settings().max_upload_bytes)})


class NotFaqSource(Conflict):
    code = "not_faq_source"
    message = N_("Only question-and-answer sources have pairs to edit.")


class NotUrlSource(Conflict):
    code = "not_url_source"
    message = N_("Only web page sources can be read again.")


class PairNotFound(NotFound):
    message = N_("This question and answer pair no longer exists.")


# --------------------------------------------------------------------------------------------------------------
# Reading


async def list_sources(
    db: AsyncSession, ctx: TenantContext, bot: Bot, *, limit: int = 100, offset: int = 0
) -> tuple[list[KnowledgeSource], int]:
    return await repository.list_sources(db, ctx, bot.id, limit=limit, offset=offset)


async def get_source(
    db: AsyncSession, ctx: TenantContext, bot: Bot, source_id: uuid.UUID, *, with_text: bool = False
) -> KnowledgeSource:
    """One of the bot's sources; another bot's or tenant's source is not found."""
    source = await repository.get_source(db, ctx, bot.id, source_id, with_text=with_text)
    if source is None:
        raise NotFound()
    return source


def error_text(source: KnowledgeSource) -> str | None:
    """The source's failure, translated now (it is stored as an msgid plus parameters)."""
    if not source.error:
        return None
    params = (source.options or {}).get("error_params") or {}
    try:
        return gettext(source.error, **params) if isinstance(params, dict) else gettext(source.error)
    except (KeyError, TypeError, ValueError):
        return gettext(source.error)


def source_out(source: KnowledgeSource) -> schemas.SourceOut:
    return schemas.SourceOut(
        id=source.id,
        kind=source.kind,  # type: ignore[arg-type]
        title=source.title,
        status=source.status,  # type: ignore[arg-type]
        error=error_text(source),
        progress=source.progress,
        chunks=source.chunk_count,
        updated_at=source.updated_at,
    )


def faq_items(source: KnowledgeSource) -> list[dict[str, str]]:
    items = (source.options or {}).get("items") or []
    return [
        {"question": str(item.get("question", "")), "answer": str(item.get("answer", ""))}
        for item in items
        if isinstance(item, dict)
    ]


async def source_detail(
    db: AsyncSession, ctx: TenantContext, source: KnowledgeSource, *, chunk_limit: int = 100, chunk_offset: int = 0
) -> schemas.SourceDetail:
    """The source with its extracted text (a preview), its live chunks and, for Q&A sources, its pairs."""
    if "extracted_text" in sa_inspect(source).unloaded:  # a deferred column: load it explicitly (async session)
        await db.refresh(source, attribute_names=["extracted_text"])
    chunks: list[KnowledgeChunk] = []
    if source.version > 0:
        chunks = await repository.source_chunks(db, ctx, source, limit=chunk_limit, offset=chunk_offset)
    text = source.extracted_text or ""
    options = source.options or {}
    return schemas.SourceDetail(
        **source_out(source).model_dump(),
        created_at=source.created_at,
        url=source.url,
        filename=source.filename,
        crawl=bool(options.get("crawl", False)),
        max_pages=options.get("max_pages") if isinstance(options.get("max_pages"), int) else None,
        sync_interval_hours=source.sync_interval_hours,
        last_synced_at=source.last_synced_at,
        text=text[:TEXT_PREVIEW_CHARS],
        text_truncated=len(text) > TEXT_PREVIEW_CHARS,
        faq_items=[schemas.FaqItem.model_construct(**item) for item in faq_items(source)],
        chunk_items=[
            schemas.ChunkOut(
                position=chunk.position, kind=chunk.kind, title=chunk.title, language=chunk.language, text=chunk.text
            )
            for chunk in chunks
        ],
    )


# --------------------------------------------------------------------------------------------------------------
# Adding


def _hash_text(kind: str, text: str) -> str:
    return content_hash(f"{kind}\x00{text}".encode())


def _faq_hash(items: list[dict[str, str]]) -> str:
    canonical = json.dumps([[item["question"], item["answer"]] for item in items], ensure_ascii=False)
    return _hash_text("faq", canonical)


def _url_hash(url: str) -> str:
    return _hash_text("url", url)


def _first_line(text: str, limit: int = 80) -> str:
    line = next((line.strip().lstrip("#").strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _queue(db: AsyncSession, source: KnowledgeSource) -> None:
    from control_plane.knowledge import tasks

    enqueue_after_commit(db, tasks.ingest_source, str(source.id), queue=QUEUE)


async def _insert(db: AsyncSession, ctx: TenantContext, bot: Bot, source: KnowledgeSource) -> KnowledgeSource:
    """Add the source unless the bot already has the same content; queue its ingestion after the commit."""
    if source.content_hash:
        existing = await repository.source_by_hash(db, ctx, bot.id, source.content_hash)
        if existing is not None:
            raise DuplicateSource(existing)
    try:
        # A savepoint: a concurrent identical upload loses on the unique key and gets the same 409.
        async with db.begin_nested():
            repository.add(db, source)
            await db.flush()
    except IntegrityError:
        existing = await repository.source_by_hash(db, ctx, bot.id, source.content_hash or "")
        if existing is None:
            raise
        raise DuplicateSource(existing) from None
    _queue(db, source)
    return source


def _new_source(ctx: TenantContext, bot: Bot, kind: str, **fields: Any) -> KnowledgeSource:
    return KnowledgeSource(
        tenant_id=ctx.tenant_id, bot_id=bot.id, kind=kind, status="queued", progress=0, version=0, **fields
    )


async def add_text(db: AsyncSession, ctx: TenantContext, bot: Bot, data: schemas.TextSourceCreate) -> KnowledgeSource:
    """Plain text typed or pasted by the owner."""
    text = data.text.strip()
    source = _new_source(
        ctx,
        bot,
        "text",
        title=(data.title.strip() or _first_line(text))[: schemas.TITLE_MAX],
        content_hash=_hash_text("text", text),
        original=text.encode("utf-8"),
        mime_type="text/plain",
        options={"revision": 0},
    )
    return await _insert(db, ctx, bot, source)


async def add_faq(db: AsyncSession, ctx: TenantContext, bot: Bot, data: schemas.FaqSourceCreate) -> KnowledgeSource:
    """Questions with answers from the form; each pair becomes one passage."""
    items = [{"question": item.question, "answer": item.answer} for item in data.items]
    source = _new_source(
        ctx,
        bot,
        "faq",
        title=(data.title.strip() or gettext(FAQ_TITLE))[: schemas.TITLE_MAX],
        content_hash=_faq_hash(items),
        options={"items": items, "revision": 0},
    )
    return await _insert(db, ctx, bot, source)


async def read_upload(upload: UploadFile) -> bytes:
    """The uploaded bytes, at most one byte more than allowed: enough to know a file is too big (413)."""
    return await upload.read(get_settings().max_upload_bytes + 1)


async def add_file(
    db: AsyncSession, ctx: TenantContext, bot: Bot, data: bytes, filename: str | None
) -> KnowledgeSource:
    """An uploaded file. Size and type are checked now (type from the content); reading it happens in the job."""
    if len(data) > get_settings().max_upload_bytes:
        raise UploadTooLarge()
    try:
        kind = detect_kind(data, filename)
    except ExtractionError as exc:
        raise SourceRejected.from_extraction(exc) from exc
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()[:300] or None
    source = _new_source(
        ctx,
        bot,
        "file",
        title=(name or kind.upper())[: schemas.TITLE_MAX],
        filename=name,
        mime_type=DETECTED_MIME.get(kind),
        content_hash=content_hash(data),
        original=data,
        options={"detected": kind, "revision": 0},
    )
    return await _insert(db, ctx, bot, source)


def checked_url(raw: str) -> str:
    """The URL as it will be fetched; refuses bad schemes, ports and literal private addresses right away."""
    from control_plane.knowledge.crawl import normalize_url
    from control_plane.knowledge.fetch import check_url

    try:
        url = str(check_url(raw.strip(), allow_loopback=get_settings().allow_loopback_urls))
    except ExtractionError as exc:
        raise SourceRejected.from_extraction(exc) from exc
    return normalize_url(url) or url


async def add_url(db: AsyncSession, ctx: TenantContext, bot: Bot, data: schemas.UrlSourceCreate) -> KnowledgeSource:
    """A web page, or with ``crawl`` its whole site (up to ``max_pages`` pages)."""
    url = checked_url(data.url)
    max_pages = (data.max_pages or DEFAULT_MAX_PAGES) if data.crawl else None
    source = _new_source(
        ctx,
        bot,
        "url",
        title=url[: schemas.TITLE_MAX],
        url=url,
        content_hash=_url_hash(url),
        options={"crawl": data.crawl, "max_pages": max_pages, "revision": 0},
    )
    return await _insert(db, ctx, bot, source)


# --------------------------------------------------------------------------------------------------------------
# Changing


def requeue(db: AsyncSession, source: KnowledgeSource, **option_changes: Any) -> None:
    """Mark the source for ingestion again; the revision makes any job still running on old content stand down."""
    options = dict(source.options or {})
    options.update(option_changes)
    options["revision"] = int(options.get("revision", 0) or 0) + 1
    source.options = options  # a new dict: SQLAlchemy does not see in-place changes to a JSON column
    source.status = "queued"
    source.progress = 0
    _queue(db, source)


async def delete_source(db: AsyncSession, ctx: TenantContext, bot: Bot, source: KnowledgeSource) -> None:
    """Delete the source with its chunks and original; the bot's artifact is rebuilt without it."""
    from control_plane.knowledge import tasks

    await repository.delete_source(db, source)
    await db.flush()
    enqueue_after_commit(db, tasks.rebuild_artifact, str(bot.id), queue=QUEUE)


async def _set_faq_items(
    db: AsyncSession, ctx: TenantContext, bot: Bot, source: KnowledgeSource, items: list[dict[str, str]]
) -> KnowledgeSource:
    if items == faq_items(source):
        return source  # nothing changed (a form sent twice): no new revision, no second ingestion
    new_hash = _faq_hash(items)
    if new_hash != source.content_hash:
        existing = await repository.source_by_hash(db, ctx, bot.id, new_hash)
        if existing is not None and existing.id != source.id:
            raise DuplicateSource(existing)
        source.content_hash = new_hash
    requeue(db, source, items=items)
    await db.flush()
    return source


async def _locked(
    db: AsyncSession, ctx: TenantContext, bot: Bot, source_id: uuid.UUID, kind: str, wrong_kind: type[AppError]
) -> KnowledgeSource:
    """The bot's source of ``kind``, locked until the commit: two owners changing it at once lose nothing."""
    source = await repository.get_source(db, ctx, bot.id, source_id, for_update=True)
    if source is None:
        raise NotFound()
    if source.kind != kind:
        raise wrong_kind()
    return source


async def update_faq_item(
    db: AsyncSession, ctx: TenantContext, bot: Bot, source_id: uuid.UUID, index: int, data: schemas.FaqItemUpdate
) -> KnowledgeSource:
    """Edit one Q&A pair; the source is chunked again (its other pairs keep answering meanwhile)."""
    source = await _locked(db, ctx, bot, source_id, "faq", NotFaqSource)
    items = faq_items(source)
    if not 0 <= index < len(items):
        raise PairNotFound()
    item = dict(items[index])
    if data.question is not None:
        item["question"] = data.question
    if data.answer is not None:
        item["answer"] = data.answer
    items[index] = item
    return await _set_faq_items(db, ctx, bot, source, items)


async def delete_faq_item(
    db: AsyncSession, ctx: TenantContext, bot: Bot, source_id: uuid.UUID, index: int
) -> KnowledgeSource | None:
    """Delete one Q&A pair. Deleting the last pair deletes the source (returns None then)."""
    source = await _locked(db, ctx, bot, source_id, "faq", NotFaqSource)
    items = faq_items(source)
    if not 0 <= index < len(items):
        raise PairNotFound()
    del items[index]
    if not items:
        await delete_source(db, ctx, bot, source)
        return None
    return await _set_faq_items(db, ctx, bot, source, items)


async def resync(db: AsyncSession, ctx: TenantContext, bot: Bot, source_id: uuid.UUID) -> KnowledgeSource:
    """Read a web page (or site) source again now; a source already queued or processing is left as it is."""
    source = await _locked(db, ctx, bot, source_id, "url", NotUrlSource)
    if source.status not in ("queued", "processing"):
        requeue(db, source)
        await db.flush()
    return source


async def set_schedule(
    db: AsyncSession, ctx: TenantContext, bot: Bot, source_id: uuid.UUID, data: schemas.ScheduleUpdate
) -> KnowledgeSource:
    """Set how often a web page source is read again (``None``: only on request)."""
    source = await _locked(db, ctx, bot, source_id, "url", NotUrlSource)
    source.sync_interval_hours = data.sync_interval_hours
    await db.flush()
    return source


# --------------------------------------------------------------------------------------------------------------
# Unanswered questions

_EDGE_PUNCTUATION = " \t\n\r.,!?¿¡;:…\"'«»“”„()[]-–—"
_SPACES = re.compile(r"\s+")


def question_key(text: str) -> str:
    """The form questions are grouped by: case, apostrophe variants, spacing and end punctuation ignored."""
    return _SPACES.sub(" ", normalize(text)).strip(_EDGE_PUNCTUATION)


async def unanswered(
    db: AsyncSession, ctx: TenantContext, bot: Bot, *, limit: int = 50, offset: int = 0
) -> tuple[list[schemas.UnansweredQuestion], int]:
    """Questions that got the fallback answer, grouped, most frequent first.

    A question drops off once a Q&A pair with the same question was added after it was last asked; asked again
    after that (the answer did not help), it comes back.
    """
    since = datetime.now(UTC) - timedelta(days=UNANSWERED_WINDOW_DAYS)
    rows = await repository.fallback_questions(db, ctx, bot.id, since=since, limit=UNANSWERED_SCAN_LIMIT)
    groups: dict[str, dict[str, Any]] = {}
    for text, asked_at in rows:  # newest first: the first text seen is the group's most recent wording
        key = question_key(text)
        if not key:
            continue
        group = groups.setdefault(key, {"question": text.strip(), "count": 0, "last_asked_at": asked_at})
        group["count"] += 1
    answered: dict[str, datetime] = {}
    for source in await repository.faq_sources(db, ctx, bot.id):
        for item in faq_items(source):
            key = question_key(item["question"])
            if key and (key not in answered or source.updated_at > answered[key]):
                answered[key] = source.updated_at
    items = [
        schemas.UnansweredQuestion(**group)
        for key, group in groups.items()
        if key not in answered or group["last_asked_at"] > answered[key]
    ]
    items.sort(key=lambda item: (-item.count, -item.last_asked_at.timestamp()))
    return items[offset : offset + limit], len(items)


async def answer_unanswered(
    db: AsyncSession, ctx: TenantContext, bot: Bot, data: schemas.UnansweredAnswer
) -> KnowledgeSource:
    """Add the pair to the bot's "answers to customers' questions" source (created on first use) and ingest it."""
    source = await repository.unanswered_source(db, ctx, bot.id)
    pair = {"question": data.question, "answer": data.answer}
    if source is None:
        source = _new_source(
            ctx,
            bot,
            "faq",
            title=gettext(UNANSWERED_TITLE)[: schemas.TITLE_MAX],
            content_hash=_faq_hash([pair]),
            options={"items": [pair], "revision": 0, "unanswered": True},
        )
        return await _insert(db, ctx, bot, source)
    items = faq_items(source)
    key = question_key(data.question)
    # Answering the same question again replaces the earlier answer instead of adding a contradicting pair.
    items = [item for item in items if question_key(item["question"]) != key] + [pair]
    return await _set_faq_items(db, ctx, bot, source, items)
