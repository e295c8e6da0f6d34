"""Background jobs of the knowledge feature: ingest a source, rebuild a bot's artifact, re-sync websites on schedule.

Ingestion (queue "ingestion") reads the source (extraction, fetching or crawling: CPU- and network-heavy, so never
in a request), chunks it, embeds the chunks when GOOGLE_API_KEY is set, and swaps the new chunks in atomically
(``artifact.swap_source``). Status and progress are committed as they change, so the knowledge page shows them
live. A failure is stored as an msgid plus parameters (translated when shown) and the tenant's owners get a
notification and an email, at most one per source and day.

Jobs carry ids and reload rows. The undecorated coroutines (``run_ingestion``, ``resync_due``) are what the
RQ-wrapped functions run, and what tests call directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot_runtime.answering.chunking import Chunk
from bot_runtime.i18n import N_, gettext, use_locale
from control_plane.accounts import repository as accounts_repository
from control_plane.jobs.queue import run_async
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.mail import Mail, send_mail
from control_plane.knowledge import artifact, repository, service
from control_plane.knowledge.artifact import PreparedSource
from control_plane.knowledge.extract import NO_TEXT, ExtractionError, extract
from control_plane.settings import get_settings

log = logging.getLogger("botfactory.knowledge")

CRAWL_MAX_BYTES = 50 * 1024 * 1024
INTERNAL_FAILURE = N_("Something went wrong while reading this source. Please try again later.")
FAILED_SUBJECT = N_("A knowledge source of your bot %(bot)s could not be read")
FAILED_BODY = N_(
    "BotFactory could not read “%(title)s” for your bot %(bot)s.\n\nReason: %(error)s\n\n"
    "The bot keeps answering from the rest of its knowledge base. Open its knowledge page to fix the source or "
    "try again: %(url)s"
)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What the job needs of the source, read once at the start (the row may change while the job runs)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    bot_id: uuid.UUID
    kind: str
    title: str
    filename: str | None
    url: str | None
    original: bytes | None
    options: dict[str, Any]
    version: int

    @property
    def revision(self) -> int:
        value = self.options.get("revision", 0)
        return value if isinstance(value, int) else 0


class _Progress:
    """Commits the source's progress (0-100) in its own short transaction whenever the number changes."""

    def __init__(self, source_id: uuid.UUID) -> None:
        self.source_id = source_id
        self.last = -1

    async def __call__(self, value: int) -> None:
        value = max(0, min(99, value))
        if value == self.last:
            return
        self.last = value
        async with get_sessionmaker()() as db:
            await repository.set_progress(db, self.source_id, value)
            await db.commit()


# --------------------------------------------------------------------------------------------------------------
# Reading each kind of source


def _renumbered(chunks: list[Chunk], start: int) -> list[Chunk]:
    return [dataclasses.replace(chunk, position=start + i) for i, chunk in enumerate(chunks)]


async def _prepare_text(source: _Snapshot) -> PreparedSource:
    data = source.original or b""
    limit = max(len(data) + 1, get_settings().max_upload_bytes)
    # A ".md" name: typed text is read as Markdown (headings, lists, tables, "Q:/A:" pairs), never sniffed as CSV.
    document = await asyncio.to_thread(extract, data, "text.md", max_bytes=limit)
    chunks = artifact.document_chunks(document, source_id=str(source.id), title=source.title)
    return PreparedSource(text=data.decode("utf-8", errors="replace"), chunks=chunks, meta=[{} for _ in chunks])


async def _prepare_faq(source: _Snapshot) -> PreparedSource:
    items = [item for item in source.options.get("items") or [] if isinstance(item, dict)]
    chunks = artifact.faq_chunks(items, source_id=str(source.id), title=source.title)
    text = "\n\n".join(f"Q: {item.get('question', '')}\nA: {item.get('answer', '')}" for item in items)
    return PreparedSource(text=text, chunks=chunks, meta=[{} for _ in chunks])


async def _prepare_file(source: _Snapshot) -> PreparedSource:
    document = await asyncio.to_thread(
        extract, source.original or b"", source.filename, max_bytes=get_settings().max_upload_bytes
    )
    title = document.title or source.title
    chunks = artifact.document_chunks(document, source_id=str(source.id), title=title)
    return PreparedSource(text=document.text, chunks=chunks, meta=[{} for _ in chunks])


async def _prepare_url(source: _Snapshot, progress: _Progress) -> PreparedSource:
    from control_plane.knowledge.crawl import crawl
    from control_plane.knowledge.fetch import extract_page, fetch

    settings = get_settings()
    url = source.url or ""
    if not source.options.get("crawl"):
        page = await fetch(
            url,
            allow_loopback=settings.allow_loopback_urls,
            max_bytes=settings.max_upload_bytes,
            timeout=settings.http_timeout_seconds,
        )
        await progress(40)
        document = await asyncio.to_thread(extract_page, page, max_bytes=settings.max_upload_bytes)
        title = document.title or url
        chunks = artifact.document_chunks(document, source_id=str(source.id), title=title)
        return PreparedSource(text=document.text, chunks=chunks, meta=[{"url": page.url} for _ in chunks], title=title)

    async def report(done: int, expected: int) -> None:
        await progress(10 + (60 * done) // max(expected, 1))

    pages = await crawl(
        url,
        max_pages=int(source.options.get("max_pages") or service.DEFAULT_MAX_PAGES),
        max_bytes_total=CRAWL_MAX_BYTES,
        allow_loopback=settings.allow_loopback_urls,
        timeout=settings.http_timeout_seconds,
        progress=report,
    )
    chunks: list[Chunk] = []
    meta: list[dict[str, Any]] = []
    texts: list[str] = []
    for page in pages:
        page_chunks = artifact.document_chunks(page.document, source_id=str(source.id), title=page.title)
        chunks += _renumbered(page_chunks, len(chunks))
        meta += [{"url": page.url} for _ in page_chunks]
        texts.append(f"[{page.url}]\n{page.document.text}")
    title = (pages[0].title if pages else "") or url
    return PreparedSource(
        text="\n\n---\n\n".join(texts), chunks=chunks, meta=meta, title=title, extra_options={"pages": len(pages)}
    )


async def _prepare(source: _Snapshot, progress: _Progress) -> PreparedSource:
    if source.kind == "text":
        prepared = await _prepare_text(source)
    elif source.kind == "faq":
        prepared = await _prepare_faq(source)
    elif source.kind == "file":
        prepared = await _prepare_file(source)
    elif source.kind == "url":
        prepared = await _prepare_url(source, progress)
    else:
        raise ValueError(f"unknown knowledge source kind {source.kind!r}")
    if not prepared.chunks:
        raise ExtractionError(NO_TEXT, code="no_text")
    return prepared


# --------------------------------------------------------------------------------------------------------------
# Outcomes


async def _fail(source: _Snapshot, message: str, params: dict[str, Any], code: str) -> bool:
    """Mark the source failed (unless a newer revision took over) and tell the tenant's owners once a day."""
    async with get_sessionmaker()() as db:
        row = await repository.job_source(db, source.id, for_update=True)
        if row is None or artifact.source_revision(row.options) != source.revision:
            return False
        options = {k: v for k, v in (row.options or {}).items() if k not in ("error_params", "error_code")}
        row.options = {**options, "error_params": params, "error_code": code}
        row.status = "failed"
        row.error = message
        row.progress = 0
        row.updated_at = datetime.now(UTC)
        bot = await repository.job_bot(db, source.bot_id)
        await _notify_owners(db, source, row.title, bot.name if bot else "", message, params)
        await db.commit()
    log.warning(
        "knowledge.source.failed",
        extra={"tenant_id": str(source.tenant_id), "source_id": str(source.id), "code": code},
    )
    return True


async def _notify_owners(
    db: Any, source: _Snapshot, title: str, bot_name: str, message: str, params: dict[str, Any]
) -> None:
    settings = get_settings()
    day = datetime.now(UTC).strftime("%Y%m%d")
    for owner in await accounts_repository.tenant_owners(db, source.tenant_id):
        inserted = await accounts_repository.add_notification_once(
            db,
            tenant_id=source.tenant_id,
            user_id=owner.id,
            kind="knowledge.source_failed",
            dedupe_key=f"knowledge.source_failed:{source.id}:{owner.id}:{day}",
            payload={"bot_id": str(source.bot_id), "source_id": str(source.id), "error": message, "params": params},
        )
        if not inserted:
            continue
        with use_locale(owner.language) as lang:
            error = gettext(message, **params) if params else gettext(message)
            values = {
                "title": title,
                "bot": bot_name,
                "error": error,
                "url": f"{settings.domain_url.rstrip('/')}/{lang}/bots/{source.bot_id}/knowledge",
            }
            subject = gettext(FAILED_SUBJECT, **values)
            text = gettext(FAILED_BODY, **values)
        await send_mail(db, Mail(to=owner.email, subject=subject, text=text))


async def _mark_synced(source: _Snapshot) -> bool:
    """The content did not change: only the sync time and status move; no rebuild, no republish."""
    async with get_sessionmaker()() as db:
        row = await repository.job_source(db, source.id, for_update=True)
        if row is None or artifact.source_revision(row.options) != source.revision:
            return False
        row.options = {k: v for k, v in (row.options or {}).items() if k not in ("error_params", "error_code")}
        row.status = "ready"
        row.error = None
        row.progress = 100
        row.last_synced_at = datetime.now(UTC)
        await db.commit()
    return True


# --------------------------------------------------------------------------------------------------------------
# Jobs


async def run_ingestion(source_id: str) -> str:
    """Ingest one source end to end. Returns ready | unchanged | failed | superseded | missing.

    "superseded": the source changed again (or was deleted) while this job ran; the newer job takes over.
    """
    sid = uuid.UUID(source_id)
    async with get_sessionmaker()() as db:
        row = await repository.job_source(db, sid, with_original=True)
        if row is None:
            return "missing"
        source = _Snapshot(
            id=row.id,
            tenant_id=row.tenant_id,
            bot_id=row.bot_id,
            kind=row.kind,
            title=row.title,
            filename=row.filename,
            url=row.url,
            original=row.original,
            options=dict(row.options or {}),
            version=row.version,
        )
        await repository.set_progress(db, sid, 5, status="processing")
        await db.commit()
    progress = _Progress(sid)
    try:
        prepared = await _prepare(source, progress)
    except ExtractionError as exc:
        await _fail(source, exc.message, exc.params, exc.code)
        return "failed"
    except Exception:
        log.exception("knowledge.ingestion.crashed", extra={"tenant_id": str(source.tenant_id), "source_id": source_id})
        await _fail(source, INTERNAL_FAILURE, {}, "internal")
        raise
    if source.version > 0 and source.options.get("text_hash") == prepared.text_hash:
        return "unchanged" if await _mark_synced(source) else "superseded"
    await progress(75)
    prepared.vectors, prepared.embedding_model = await artifact.embed_chunks(prepared.chunks)
    await progress(90)
    version = await artifact.swap_source(sid, source.revision, prepared)
    return "ready" if version is not None else "superseded"


async def resync_due(now: datetime | None = None) -> dict[str, int]:
    """Queue every website source whose re-sync is due; one source's failure never stops the rest."""
    sessionmaker = get_sessionmaker()
    async with sessionmaker() as db:
        due = await repository.due_url_sources(db, now or datetime.now(UTC))
    queued = failed = 0
    for source_id in due:
        try:
            async with sessionmaker() as db:
                source = await repository.job_source(db, source_id, for_update=True)
                if source is None or source.status in ("queued", "processing"):
                    continue
                service.requeue(db, source)
                await db.commit()
            queued += 1
        except Exception:
            failed += 1
            log.exception("knowledge.resync.failed", extra={"source_id": str(source_id)})
    log.info("knowledge.resync.queued", extra={"queued": queued, "failed": failed})
    return {"due": len(due), "queued": queued, "failed": failed}


@run_async
async def ingest_source(source_id: str) -> str:
    """RQ job: :func:`run_ingestion` in its own event loop."""
    return await run_ingestion(source_id)


@run_async
async def rebuild_artifact(bot_id: str) -> int | None:
    """RQ job: rebuild and republish a bot's artifact (after a source was deleted)."""
    return await artifact.rebuild(uuid.UUID(bot_id))


@run_async
async def resync_due_sources() -> dict[str, int]:
    """Periodic job (RQ): :func:`resync_due`."""
    return await resync_due()


@run_async
async def purge_bot_artifacts(bot_id: str) -> int:
    """Queued after a bot's deletion commits: its retrieval artifacts leave Redis (rows went by ON DELETE CASCADE)."""
    return await artifact.delete_bot_artifacts(uuid.UUID(bot_id))
