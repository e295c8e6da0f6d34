"""Ingestion end to end: every kind of source through the API and the real job code, status and progress,
duplicates, failures (translated, owners told), deletion, Q&A pair edits, the atomic artifact swap, scheduled
re-syncs, and one run under the real ``botfactory worker --burst``.

Jobs queued by the API are run in this process with the undecorated job coroutines (``drain_jobs``), except in
the worker test. Files are generated here (PDF, DOCX, XLSX); websites are the loopback sites of conftest.py.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import select, update

from bot_runtime import contract
from bot_runtime.answering.index import KnowledgeIndex
from bot_runtime.i18n import gettext, use_locale
from control_plane.jobs.queue import get_queue
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.redis import get_redis
from control_plane.knowledge import artifact, tasks
from control_plane.knowledge.service import DuplicateSource
from control_plane.models import KnowledgeArtifact, KnowledgeChunk, KnowledgeSource, Notification, OutboxEmail
from tests.control_plane.knowledge.conftest import Website
from tests.control_plane.knowledge.test_extract import make_docx, make_pdf, make_xlsx
from tests.factories import Account, make_account, make_bot

ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------------------------------------------
# Helpers shared with test_api.py and test_console.py


@pytest.fixture(autouse=True)
def empty_ingestion_queue() -> None:
    """RQ keys live outside the per-session prefix the suite wipes; start every test with an empty queue."""
    get_queue("ingestion").empty()


async def drain_jobs() -> list[str]:
    """Run every queued knowledge job with the real job code, in this process; returns their outcomes."""
    queue = get_queue("ingestion")
    outcomes: list[str] = []
    for _round in range(20):
        job_ids = queue.job_ids
        if not job_ids:
            return outcomes
        for job_id in job_ids:
            job = queue.fetch_job(job_id)
            queue.remove(job_id)
            if job is None:
                continue
            name = job.func_name
            if name == "control_plane.knowledge.tasks.ingest_source":
                outcomes.append(await tasks.run_ingestion(*job.args))
            elif name == "control_plane.knowledge.tasks.rebuild_artifact":
                await artifact.rebuild(uuid.UUID(job.args[0]))
                outcomes.append("rebuilt")
            else:
                raise AssertionError(f"unexpected job {name}")
            job.delete()
    raise AssertionError("jobs keep queueing more jobs")


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> tuple[Account, dict[str, Any]]:
    account = await make_account(client)
    bot = await make_bot(client, account)
    return account, bot


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allow fetching the 127.0.0.1 test sites (the dev-only ALLOW_LOOPBACK_URLS)."""
    from control_plane.settings import get_settings

    monkeypatch.setattr(get_settings(), "allow_loopback_urls", True)


async def add(client: httpx.AsyncClient, account: Account, bot: dict[str, Any], kind: str, **body: Any) -> str:
    """POST a source and check the 202 {id, status: queued} contract; returns the id."""
    response = await client.post(f"/api/v1/bots/{bot['id']}/knowledge/{kind}", json=body, headers=account.headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["id"])


async def upload(
    client: httpx.AsyncClient, account: Account, bot: dict[str, Any], name: str, data: bytes, **headers: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/files",
        files={"file": (name, data, "application/octet-stream")},
        headers={**account.headers, **headers},
    )


async def source_json(client: httpx.AsyncClient, account: Account, bot: dict[str, Any], source_id: str) -> Any:
    response = await client.get(f"/api/v1/bots/{bot['id']}/knowledge/{source_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def current_index(bot_id: str) -> tuple[int, KnowledgeIndex]:
    """The bot's artifact version (from its row) and the index stored in Redis under ``artifact_key``."""
    async with get_sessionmaker()() as db:
        row = await db.scalar(select(KnowledgeArtifact).where(KnowledgeArtifact.bot_id == uuid.UUID(bot_id)))
    assert row is not None and row.version > 0
    raw = await get_redis().get(contract.artifact_key(bot_id, row.version))
    assert raw is not None, "the current artifact must be in Redis"
    return row.version, KnowledgeIndex.from_bytes(raw)


def texts(index: KnowledgeIndex) -> str:
    return "\n".join(chunk.text for chunk in index.chunks)


# --------------------------------------------------------------------------------------------------------------
# Each kind of source


async def test_text_source_end_to_end(client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]) -> None:
    account, bot = owner
    text = (
        "# Delivery\n\nWe deliver across Tashkent within one day. Delivery is free for orders over 300 000 so'm.\n\n"
        "# Returns\n\nYou can return any item within 14 days with the receipt."
    )
    source_id = await add(client, account, bot, "text", title="Shop rules", text=text)
    listing = (await client.get(f"/api/v1/bots/{bot['id']}/knowledge", headers=account.headers)).json()
    assert listing["total"] == 1
    item = listing["items"][0]
    assert set(item) == {"id", "kind", "title", "status", "error", "progress", "chunks", "updated_at"}
    assert (item["id"], item["kind"], item["title"], item["status"]) == (source_id, "text", "Shop rules", "queued")

    assert await drain_jobs() == ["ready"]

    detail = await source_json(client, account, bot, source_id)
    assert (detail["status"], detail["progress"], detail["error"]) == ("ready", 100, None)
    assert detail["chunks"] == len(detail["chunk_items"]) >= 2
    assert "We deliver across Tashkent" in detail["text"]
    titles = {chunk["title"] for chunk in detail["chunk_items"]}
    assert titles == {"Shop rules › Delivery", "Shop rules › Returns"}
    version, index = await current_index(bot["id"])
    assert version == 1
    assert {chunk.source_id for chunk in index.chunks} == {source_id}
    assert index.search("free delivery over", k=1)[0].chunk.title == "Shop rules › Delivery"
    # The runtimes were told: the tenant's config document names the new artifact version.
    raw = await get_redis().get(contract.config_key(account.tenant_id))
    assert raw is not None
    assert contract.TenantConfig.from_json(raw).bot(bot["id"]).artifact_version == 1  # type: ignore[union-attr]


async def test_faq_source_one_chunk_per_pair(client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]) -> None:
    account, bot = owner
    items = [
        {"question": "Do you deliver on Sundays?", "answer": "Yes, from 10:00 to 16:00."},
        {"question": "Yakshanba kuni ishlaysizmi?", "answer": "Ha, 10:00 dan 16:00 gacha."},
    ]
    source_id = await add(client, account, bot, "faq", items=items)
    await drain_jobs()
    detail = await source_json(client, account, bot, source_id)
    assert detail["status"] == "ready"
    assert detail["faq_items"] == items
    assert [chunk["kind"] for chunk in detail["chunk_items"]] == ["faq", "faq"]
    assert detail["chunk_items"][0]["text"] == "Do you deliver on Sundays?\nYes, from 10:00 to 16:00."
    _, index = await current_index(bot["id"])
    assert [chunk.question for chunk in index.chunks] == [item["question"] for item in items]


async def test_pdf_docx_and_xlsx_uploads(client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]) -> None:
    account, bot = owner
    pdf = make_pdf([[("Opening hours", 20.0), "", "We are open every day from 9:00 to 18:00."]], title="Shop guide")
    ids = {}
    for name, data in (("guide.pdf", pdf), ("handbook.docx", make_docx()), ("prices.xlsx", make_xlsx())):
        response = await upload(client, account, bot, name, data)
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    assert await drain_jobs() == ["ready", "ready", "ready"]

    pdf_detail = await source_json(client, account, bot, ids["guide.pdf"])
    assert pdf_detail["filename"] == "guide.pdf" and pdf_detail["title"] == "guide.pdf"
    assert "every day from 9:00 to 18:00" in pdf_detail["text"]

    docx_detail = await source_json(client, account, bot, ids["handbook.docx"])
    docx_chunks = {chunk["text"] for chunk in docx_detail["chunk_items"]}
    assert "Item: Green tea\nSize: 100 g\nPrice: 45 000" in docx_chunks  # a table row stays one chunk with its header
    assert any(
        c["kind"] == "faq" and c["text"].startswith("Yetkazib berish bepulmi?") for c in docx_detail["chunk_items"]
    )

    xlsx_detail = await source_json(client, account, bot, ids["prices.xlsx"])
    rows = [chunk for chunk in xlsx_detail["chunk_items"] if chunk["kind"] == "row"]
    assert len(rows) == 3
    assert "SKU: GT-100\nItem: Green tea\nPrice: 45000" in rows[0]["text"]
    assert {chunk["text"] for chunk in xlsx_detail["chunk_items"] if chunk["kind"] == "faq"} == {
        "Есть ли доставка?\nДа, по всему Узбекистану.",
        "Можно оплатить картой?\nДа, Uzcard и Humo.",
    }
    _, index = await current_index(bot["id"])
    assert {chunk.source_id for chunk in index.chunks} == set(ids.values())
    best = index.search("how much is the herbal mix", k=1)[0].chunk
    assert "HB-050" in best.text and "38500" in best.text


async def test_single_web_page(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], website: Website, loopback: None
) -> None:
    account, bot = owner
    source_id = await add(client, account, bot, "url", url=f"{website.base_url}/prices", crawl=False)
    await drain_jobs()
    detail = await source_json(client, account, bot, source_id)
    assert detail["status"] == "ready", detail["error"]
    assert detail["title"] == "Prices" and detail["crawl"] is False
    assert detail["last_synced_at"] is not None
    assert any("Green tea 100 g" in chunk["text"] and "45 000" in chunk["text"] for chunk in detail["chunk_items"])
    assert website.hits == ["/prices"]


async def test_site_crawl_respects_max_pages_and_robots(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], website: Website, loopback: None
) -> None:
    account, bot = owner
    source_id = await add(client, account, bot, "url", url=f"{website.base_url}/", crawl=True, max_pages=3)
    await drain_jobs()
    detail = await source_json(client, account, bot, source_id)
    assert detail["status"] == "ready", detail["error"]
    assert (detail["crawl"], detail["max_pages"]) == (True, 3)
    pages = [line for line in detail["text"].splitlines() if line.startswith(f"[{website.base_url}")]
    assert len(pages) == 3
    assert not any("/private" in hit for hit in website.hits)
    assert "Acme Tea sells green and black tea" in detail["text"]


async def test_loopback_urls_are_refused_outside_development(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], website: Website
) -> None:
    account, bot = owner
    response = await client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/url",
        json={"url": f"{website.base_url}/", "crawl": False},
        headers={**account.headers, "Accept-Language": "ru"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in ("address_not_allowed", "port_not_allowed", "unsafe_url")
    assert "127.0.0.1" in error["message"] or "порт" in error["message"].lower()
    assert website.hits == []


# --------------------------------------------------------------------------------------------------------------
# Status, progress, duplicates, failures


async def test_status_and_progress_are_committed_while_the_job_runs(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    account, bot = owner
    source_id = await add(client, account, bot, "text", title="Hours", text="We are open from 9 to 18 every day.")
    seen: list[tuple[str, int]] = []
    original = artifact.embed_chunks

    async def watching(chunks: Any) -> Any:
        # Another connection (the UI's poll) sees the job's progress: it was committed, not just flushed.
        listing = (await client.get(f"/api/v1/bots/{bot['id']}/knowledge", headers=account.headers)).json()
        seen.append((listing["items"][0]["status"], listing["items"][0]["progress"]))
        return await original(chunks)

    monkeypatch.setattr(artifact, "embed_chunks", watching)
    await drain_jobs()
    assert seen and seen[0][0] == "processing" and 5 <= seen[0][1] < 100
    assert (await source_json(client, account, bot, source_id))["progress"] == 100


async def test_duplicate_is_409_naming_the_existing_source(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]
) -> None:
    account, bot = owner
    first = await add(client, account, bot, "text", title="Price list", text="Green tea costs 45 000 so'm.")
    again = await client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/text",
        json={"title": "Another name", "text": "  Green tea costs 45 000 so'm.\n"},
        headers={**account.headers, "Accept-Language": "ru"},
    )
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "duplicate_source" and error["source_id"] == first
    # Rendered in the caller's language from the msgid (whatever the catalog holds for it right now).
    with use_locale("ru"):
        assert error["message"] == gettext(DuplicateSource.message, title="Price list")

    data = make_docx()
    assert (await upload(client, account, bot, "a.docx", data)).status_code == 202
    duplicate = await upload(client, account, bot, "copy of a.docx", data)
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "duplicate_source"
    # Another bot may hold the same content.
    other_account = await make_account(client)
    other = await make_bot(client, other_account)
    assert (await upload(client, other_account, other, "a.docx", data)).status_code == 202


async def test_upload_checks_size_and_type_before_queueing(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.settings import get_settings

    account, bot = owner
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    unsupported = await upload(client, account, bot, "logo.png", png, **{"Accept-Language": "uz"})
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["code"] == "unsupported_type"
    assert unsupported.json()["error"]["message"] != "This file type is not supported."
    empty = await upload(client, account, bot, "empty.txt", b"")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty"
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 1024)
    big = await upload(client, account, bot, "big.txt", b"a" * 2048)
    assert big.status_code == 413
    assert "MB" in big.json()["error"]["message"]
    assert get_queue("ingestion").count == 0


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("broken.pdf", b"%PDF-1.7\n" + b"\x00garbage" * 50, "damaged"),
        ("scan.pdf", make_pdf([["ignored"]], image_only=True), "image_only"),
        ("locked.pdf", make_pdf([["Secret"]], user_password="pw"), "encrypted"),
    ],
)
async def test_unreadable_file_fails_with_a_translated_error_and_owners_are_told(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], name: str, data: bytes, code: str
) -> None:
    account, bot = owner
    response = await upload(client, account, bot, name, data)
    assert response.status_code == 202
    source_id = response.json()["id"]
    assert await drain_jobs() == ["failed"]
    english = await source_json(client, account, bot, source_id)
    assert english["status"] == "failed" and english["chunks"] == 0
    russian = await client.get(
        f"/api/v1/bots/{bot['id']}/knowledge", headers={**account.headers, "Accept-Language": "ru"}
    )
    translated = russian.json()["items"][0]["error"]
    assert translated and translated != english["error"]
    async with get_sessionmaker()() as db:
        source = await db.get(KnowledgeSource, uuid.UUID(source_id))
        notices = list(await db.scalars(select(Notification).where(Notification.kind == "knowledge.source_failed")))
        mails = list(await db.scalars(select(OutboxEmail).where(OutboxEmail.to_address == account.email)))
    assert source is not None and source.options["error_code"] == code
    assert len(notices) == 1 and notices[0].payload["source_id"] == source_id
    failure_mails = [mail for mail in mails if name in mail.body_text]
    assert len(failure_mails) == 1 and english["error"] in failure_mails[0].body_text
    # Failing again the same day (an RQ retry runs the job again) does not notify again: the dedupe key.
    assert await tasks.run_ingestion(source_id) == "failed"
    async with get_sessionmaker()() as db:
        assert len(list(await db.scalars(select(Notification)))) == 1
        assert len(list(await db.scalars(select(OutboxEmail).where(OutboxEmail.to_address == account.email)))) == len(
            mails
        )


# --------------------------------------------------------------------------------------------------------------
# Delete, Q&A edits, the atomic swap


async def test_delete_rebuilds_the_artifact_without_the_source(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]
) -> None:
    account, bot = owner
    keep = await add(client, account, bot, "text", title="Hours", text="We are open from 9 to 18 every day.")
    gone = await add(client, account, bot, "text", title="Promo", text="Spring sale: minus 20 percent on green tea.")
    await drain_jobs()
    version, index = await current_index(bot["id"])
    assert {chunk.source_id for chunk in index.chunks} == {keep, gone}

    response = await client.delete(f"/api/v1/bots/{bot['id']}/knowledge/{gone}", headers=account.headers)
    assert response.status_code == 204
    assert (await client.get(f"/api/v1/bots/{bot['id']}/knowledge/{gone}", headers=account.headers)).status_code == 404
    assert await drain_jobs() == ["rebuilt"]
    new_version, index = await current_index(bot["id"])
    assert new_version == version + 1
    assert {chunk.source_id for chunk in index.chunks} == {keep}
    async with get_sessionmaker()() as db:
        orphans = await db.scalars(select(KnowledgeChunk).where(KnowledgeChunk.source_id == uuid.UUID(gone)))
        assert list(orphans) == []


async def test_faq_pair_edit_and_delete(client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]) -> None:
    account, bot = owner
    items = [
        {"question": "Is delivery free?", "answer": "Yes, in Tashkent."},
        {"question": "Do you take cards?", "answer": "Yes, Uzcard and Humo."},
    ]
    source_id = await add(client, account, bot, "faq", items=items)
    await drain_jobs()
    base = f"/api/v1/bots/{bot['id']}/knowledge/{source_id}/faq"
    edited = await client.patch(f"{base}/0", json={"answer": "Yes, everywhere in Uzbekistan."}, headers=account.headers)
    assert edited.status_code == 200, edited.text
    assert edited.json()["status"] == "queued"
    assert edited.json()["faq_items"][0] == {
        "question": "Is delivery free?",
        "answer": "Yes, everywhere in Uzbekistan.",
    }
    await drain_jobs()
    _, index = await current_index(bot["id"])
    assert "Yes, everywhere in Uzbekistan." in texts(index) and "Yes, in Tashkent." not in texts(index)

    assert (await client.patch(f"{base}/5", json={"answer": "x"}, headers=account.headers)).status_code == 404
    assert (await client.patch(f"{base}/0", json={}, headers=account.headers)).status_code == 422
    assert (await client.delete(f"{base}/1", headers=account.headers)).status_code == 204
    await drain_jobs()
    detail = await source_json(client, account, bot, source_id)
    assert [item["question"] for item in detail["faq_items"]] == ["Is delivery free?"]
    assert detail["chunks"] == 1
    # Deleting the last pair deletes the source.
    assert (await client.delete(f"{base}/0", headers=account.headers)).status_code == 204
    assert (
        await client.get(f"/api/v1/bots/{bot['id']}/knowledge/{source_id}", headers=account.headers)
    ).status_code == 404

    text_id = await add(client, account, bot, "text", title="T", text="Some text about tea.")
    wrong = await client.patch(
        f"/api/v1/bots/{bot['id']}/knowledge/{text_id}/faq/0", json={"answer": "x"}, headers=account.headers
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "not_faq_source"


async def test_reingest_keeps_answering_from_the_old_version_until_the_swap(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    account, bot = owner
    source_id = await add(client, account, bot, "faq", items=[{"question": "Price of green tea?", "answer": "45 000"}])
    other = await add(client, account, bot, "text", title="Hours", text="We are open from 9 to 18 every day.")
    await drain_jobs()
    v_before, _ = await current_index(bot["id"])  # two builds: versions 1 and 2

    response = await client.patch(
        f"/api/v1/bots/{bot['id']}/knowledge/{source_id}/faq/0", json={"answer": "50 000"}, headers=account.headers
    )
    assert response.status_code == 200
    observed: dict[str, Any] = {}
    original = artifact.embed_chunks

    async def midway(chunks: Any) -> Any:
        # The new chunks exist only in the job's memory: the published state is still the old one.
        version, index = await current_index(bot["id"])
        async with get_sessionmaker()() as db:
            live = await db.scalars(select(KnowledgeChunk.text).where(KnowledgeChunk.source_id == uuid.UUID(source_id)))
            observed.update(version=version, text=texts(index), rows=list(live))
        return await original(chunks)

    monkeypatch.setattr(artifact, "embed_chunks", midway)
    await drain_jobs()
    assert observed["version"] == v_before
    assert "45 000" in observed["text"] and "50 000" not in observed["text"]
    assert observed["rows"] == ["Price of green tea?\n45 000"]

    v_after, index = await current_index(bot["id"])
    assert v_after == v_before + 1
    assert "50 000" in texts(index) and "45 000" not in texts(index)
    assert {chunk.source_id for chunk in index.chunks} == {source_id, other}
    # The previous version stays for runtimes that have not reloaded yet; older ones are gone.
    redis = get_redis()
    assert await redis.exists(contract.artifact_key(bot["id"], v_before))
    assert not await redis.exists(contract.artifact_key(bot["id"], v_before - 1))
    async with get_sessionmaker()() as db:
        versions = await db.scalars(
            select(KnowledgeChunk.version).where(KnowledgeChunk.source_id == uuid.UUID(source_id))
        )
        assert set(versions) == {2}


async def test_a_job_on_stale_content_stands_down(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit while a job runs queues a second job; the first, holding older content, must not swap it in."""
    account, bot = owner
    source_id = await add(client, account, bot, "faq", items=[{"question": "Hours?", "answer": "9 to 18"}])
    original = artifact.embed_chunks
    edited: list[int] = []

    async def edit_meanwhile(chunks: Any) -> Any:
        if not edited:
            response = await client.patch(
                f"/api/v1/bots/{bot['id']}/knowledge/{source_id}/faq/0",
                json={"answer": "10 to 19"},
                headers=account.headers,
            )
            edited.append(response.status_code)
        return await original(chunks)

    monkeypatch.setattr(artifact, "embed_chunks", edit_meanwhile)
    assert await drain_jobs() == ["superseded", "ready"]
    assert edited == [200]
    _, index = await current_index(bot["id"])
    assert "10 to 19" in texts(index) and "9 to 18" not in texts(index)


async def test_resync_of_unchanged_page_skips_the_rebuild(
    client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]], website: Website, loopback: None
) -> None:
    account, bot = owner
    source_id = await add(client, account, bot, "url", url=f"{website.base_url}/about")
    await drain_jobs()
    version, _ = await current_index(bot["id"])
    response = await client.post(f"/api/v1/bots/{bot['id']}/knowledge/{source_id}/resync", headers=account.headers)
    assert response.status_code == 202 and response.json() == {"id": source_id, "status": "queued"}
    assert await drain_jobs() == ["unchanged"]
    assert (await current_index(bot["id"]))[0] == version
    assert (await source_json(client, account, bot, source_id))["status"] == "ready"
    text_id = await add(client, account, bot, "text", title="T", text="Tea facts.")
    refused = await client.post(f"/api/v1/bots/{bot['id']}/knowledge/{text_id}/resync", headers=account.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_url_source"


async def test_scheduled_resync_queues_due_sources_and_survives_a_bad_one(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],
    website: Website,
    loopback: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account, bot = owner
    due = await add(client, account, bot, "url", url=f"{website.base_url}/about")
    broken = await add(client, account, bot, "url", url=f"{website.base_url}/contact")
    not_due = await add(client, account, bot, "url", url=f"{website.base_url}/prices")
    await drain_jobs()
    for source_id in (due, broken, not_due):
        response = await client.patch(
            f"/api/v1/bots/{bot['id']}/knowledge/{source_id}", json={"sync_interval_hours": 24}, headers=account.headers
        )
        assert response.status_code == 200 and response.json()["sync_interval_hours"] == 24
    long_ago = datetime.now(UTC) - timedelta(days=2)
    async with get_sessionmaker()() as db:
        await db.execute(
            update(KnowledgeSource)
            .where(KnowledgeSource.id.in_([uuid.UUID(due), uuid.UUID(broken)]))
            .values(last_synced_at=long_ago, updated_at=long_ago)
        )
        await db.commit()

    from control_plane.knowledge import service

    real_requeue = service.requeue

    def flaky(db: Any, source: KnowledgeSource, **changes: Any) -> None:
        if str(source.id) == broken:
            raise RuntimeError("one bad row")
        real_requeue(db, source, **changes)

    monkeypatch.setattr(service, "requeue", flaky)
    result = await tasks.resync_due()
    assert result == {"due": 2, "queued": 1, "failed": 1}
    queued = [get_queue("ingestion").fetch_job(job_id) for job_id in get_queue("ingestion").job_ids]
    assert [job.args for job in queued if job] == [(due,)]
    assert await drain_jobs() == ["unchanged"]

    off = await client.patch(
        f"/api/v1/bots/{bot['id']}/knowledge/{due}", json={"sync_interval_hours": None}, headers=account.headers
    )
    assert off.json()["sync_interval_hours"] is None
    bad = await client.patch(
        f"/api/v1/bots/{bot['id']}/knowledge/{due}", json={"sync_interval_hours": 0}, headers=account.headers
    )
    assert bad.status_code == 422


async def test_under_the_real_worker(client: httpx.AsyncClient, owner: tuple[Account, dict[str, Any]]) -> None:
    """``botfactory worker --burst`` runs the RQ-wrapped job: the same result as the in-process runs above."""
    account, bot = owner
    book = openpyxl.Workbook()
    book.active.append(["Item", "Price"])
    book.active.append(["Green tea", 45000])
    buffer = io.BytesIO()
    book.save(buffer)
    response = await upload(client, account, bot, "prices.xlsx", buffer.getvalue())
    assert response.status_code == 202
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "control_plane.cli", "worker", "--burst", "--queues", "ingestion"],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    detail = await source_json(client, account, bot, response.json()["id"])
    assert detail["status"] == "ready", detail["error"]
    assert detail["chunk_items"][0]["text"] == "Item: Green tea\nPrice: 45000"
    _, index = await current_index(bot["id"])
    assert len(index.chunks) == 1
