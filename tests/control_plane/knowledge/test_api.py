"""The knowledge API and pages: contract shapes, validation, roles, tenant isolation, and the no-JavaScript forms."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.control_plane.bots.helpers import add_tenant_member, sign_in_browser
from tests.control_plane.knowledge.test_ingestion import add, drain_jobs, empty_ingestion_queue, owner  # noqa: F401
from tests.factories import Account, make_account, make_bot

# --------------------------------------------------------------------------------------------------------------
# Contract and validation


async def test_detail_with_text_and_paged_chunks(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    text = "\n\n".join(f"# Section {n}\n\nParagraph number {n} about green tea and delivery." for n in range(1, 6))
    source_id = await add(client, account, bot, "text", title="", text=text)
    await drain_jobs()
    url = f"/api/v1/bots/{bot['id']}/knowledge/{source_id}"
    detail = (await client.get(url, headers=account.headers)).json()
    assert detail["title"] == "Section 1"  # no title given: the first line
    assert detail["kind"] == "text" and detail["chunks"] == 5 and len(detail["chunk_items"]) == 5
    assert set(detail["chunk_items"][0]) == {"position", "kind", "title", "language", "text"}
    assert detail["text"] == text and detail["text_truncated"] is False
    assert detail["faq_items"] == [] and detail["url"] is None and detail["sync_interval_hours"] is None
    page = (await client.get(f"{url}?chunk_limit=2&chunk_offset=2", headers=account.headers)).json()
    assert [chunk["position"] for chunk in page["chunk_items"]] == [2, 3]


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("text", {"title": "x", "text": "   "}, "text"),
        ("text", {"text": "ok", "extra": 1}, "extra"),
        ("faq", {"items": []}, "items"),
        ("faq", {"items": [{"question": "Q?", "answer": ""}]}, "items.0.answer"),
        ("url", {"url": "https://example.com", "crawl": True, "max_pages": 0}, "max_pages"),
        ("url", {"crawl": True}, "url"),
    ],
)
async def test_malformed_bodies_are_422(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
    kind: str,
    body: dict[str, Any],
    field: str,
) -> None:
    account, bot = owner
    response = await client.post(f"/api/v1/bots/{bot['id']}/knowledge/{kind}", json=body, headers=account.headers)
    assert response.status_code == 422
    assert field in [item["field"] for item in response.json()["error"]["fields"]]


async def test_bad_urls_are_refused_with_a_reason(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    for url, code in (
        ("ftp://example.com/file", "invalid_url"),
        ("http://10.0.0.5/admin", "unsafe_url"),
        ("http://example.com:8080/", "port_not_allowed"),
    ):
        response = await client.post(
            f"/api/v1/bots/{bot['id']}/knowledge/url", json={"url": url}, headers=account.headers
        )
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == code, response.text


async def test_unknown_source_is_404(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    base = f"/api/v1/bots/{bot['id']}/knowledge/{uuid.uuid4()}"
    assert (await client.get(base, headers=account.headers)).status_code == 404
    assert (await client.delete(base, headers=account.headers)).status_code == 404
    assert (await client.post(f"{base}/resync", headers=account.headers)).status_code == 404


# --------------------------------------------------------------------------------------------------------------
# Roles and tenants


async def test_viewers_read_and_editors_write(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    source_id = await add(client, account, bot, "faq", items=[{"question": "Open on Sundays?", "answer": "Yes."}])
    await drain_jobs()
    viewer = await make_account(client)
    await add_tenant_member(account.tenant_id, viewer, "viewer")
    headers = {**viewer.headers, "X-Tenant-Id": account.tenant_id}
    base = f"/api/v1/bots/{bot['id']}"
    assert (await client.get(f"{base}/knowledge", headers=headers)).status_code == 200
    assert (await client.get(f"{base}/knowledge/{source_id}", headers=headers)).status_code == 200
    assert (await client.get(f"{base}/unanswered", headers=headers)).status_code == 200
    assert (await client.post(f"{base}/ask", json={"question": "Open on Sundays?"}, headers=headers)).status_code == 200
    writes = [
        ("POST", f"{base}/knowledge/text", {"text": "New text"}),
        ("POST", f"{base}/knowledge/faq", {"items": [{"question": "a", "answer": "b"}]}),
        ("POST", f"{base}/knowledge/url", {"url": "https://example.com"}),
        ("PATCH", f"{base}/knowledge/{source_id}", {"sync_interval_hours": 24}),
        ("PATCH", f"{base}/knowledge/{source_id}/faq/0", {"answer": "No."}),
        ("DELETE", f"{base}/knowledge/{source_id}/faq/0", None),
        ("POST", f"{base}/knowledge/{source_id}/resync", None),
        ("DELETE", f"{base}/knowledge/{source_id}", None),
        ("POST", f"{base}/unanswered/answer", {"question": "a", "answer": "b"}),
    ]
    for method, url, body in writes:
        response = await client.request(method, url, json=body, headers=headers)
        assert response.status_code == 403, f"{method} {url} → {response.status_code}"
    files = await client.post(f"{base}/knowledge/files", files={"file": ("a.txt", b"hello")}, headers=headers)
    assert files.status_code == 403

    editor = await make_account(client)
    await add_tenant_member(account.tenant_id, editor, "editor")
    response = await client.post(
        f"{base}/knowledge/text",
        json={"text": "Editors may add knowledge."},
        headers={**editor.headers, "X-Tenant-Id": account.tenant_id},
    )
    assert response.status_code == 202


async def test_tenant_b_cannot_reach_tenant_a_sources(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    a, a_bot = owner
    secret = "Alpha secret price list " + uuid.uuid4().hex
    source_id = await add(client, a, a_bot, "faq", items=[{"question": "Secret?", "answer": secret}])
    await drain_jobs()
    a_ask = await client.post(f"/api/v1/bots/{a_bot['id']}/ask", json={"question": "Secret?"}, headers=a.headers)
    conversation_id = a_ask.json()["conversation_id"]

    b = await make_account(client)
    b_bot = await make_bot(client, b)
    for bot_id in (a_bot["id"], b_bot["id"]):  # A's bot, and B's own bot with A's source in the path
        base = f"/api/v1/bots/{bot_id}/knowledge/{source_id}"
        attempts = [
            ("GET", base, None),
            ("PATCH", base, {"sync_interval_hours": 1}),
            ("PATCH", f"{base}/faq/0", {"answer": "hacked"}),
            ("PATCH", f"{base}/faq/0", {}),  # a body that would be a 422 must still be a 404
            ("DELETE", f"{base}/faq/0", None),
            ("POST", f"{base}/resync", None),
            ("DELETE", base, None),
        ]
        for method, url, body in attempts:
            response = await client.request(method, url, json=body, headers=b.headers)
            assert response.status_code == 404, f"{method} {url} → {response.status_code}"
            assert secret not in response.text
    a_base = f"/api/v1/bots/{a_bot['id']}"
    for method, url, body in [
        ("GET", f"{a_base}/knowledge", None),
        ("POST", f"{a_base}/knowledge/text", {"text": "x"}),
        ("POST", f"{a_base}/ask", {"question": "Secret?"}),
        ("GET", f"{a_base}/unanswered", None),
        ("POST", f"{a_base}/unanswered/answer", {"question": "a", "answer": "b"}),
        ("GET", f"{a_base}/abuse-log", None),
    ]:
        response = await client.request(method, url, json=body, headers=b.headers)
        assert response.status_code == 404, f"{method} {url} → {response.status_code}"
    # A's console conversation cannot be continued from B's bot.
    hijack = await client.post(
        f"/api/v1/bots/{b_bot['id']}/ask",
        json={"question": "Secret?", "conversation_id": conversation_id},
        headers=b.headers,
    )
    assert hijack.status_code == 404
    # Pages too.
    browser = await sign_in_browser(b)
    for path in (
        f"/en/bots/{a_bot['id']}/knowledge",
        f"/en/bots/{b_bot['id']}/knowledge/{source_id}",
        f"/en/bots/{a_bot['id']}/console",
        f"/en/bots/{a_bot['id']}/unanswered",
    ):
        page = await client.get(path, headers={"Cookie": browser.cookie_header, "Accept": "text/html"})
        assert page.status_code == 404, path
        assert secret not in page.text
    detail = await client.get(f"{a_base}/knowledge/{source_id}", headers=a.headers)
    assert detail.status_code == 200 and detail.json()["faq_items"][0]["answer"] == secret


# --------------------------------------------------------------------------------------------------------------
# Pages (no JavaScript needed)


def browser_headers(browser: Any) -> dict[str, str]:
    return {"Cookie": browser.cookie_header, "Accept": "text/html"}


async def test_knowledge_pages_work_without_javascript(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    browser = await sign_in_browser(account)
    headers = browser_headers(browser)
    base = f"/en/bots/{bot['id']}/knowledge"
    page = await client.get(base, headers=headers)
    assert page.status_code == 200
    assert page.text.count('name="question"') == 5  # spare Q&A rows
    assert 'enctype="multipart/form-data"' in page.text and 'name="crawl"' in page.text

    text = await client.post(
        f"{base}/text",
        data={"csrf_token": browser.csrf_token, "title": "Hours", "text": "We are open from 9 to 18 every day."},
        headers=headers,
    )
    assert text.status_code == 303 and text.headers["location"] == f"/en/bots/{bot['id']}/knowledge?done=added"
    listing = await client.get(f"{base}?done=added", headers=headers)
    assert "Hours" in listing.text and 'data-poll="1"' in listing.text and "alert-success" in listing.text

    faq = await client.post(
        f"{base}/faq",
        data={
            "csrf_token": browser.csrf_token,
            "title": "",
            "question": ["Do you deliver?", "", "Half filled"],
            "answer": ["Yes, all over Tashkent.", "", ""],
        },
        headers=headers,
    )
    assert faq.status_code == 422  # a half-filled row is a mistake, blank rows are not
    assert "Half filled" in faq.text
    faq = await client.post(
        f"{base}/faq",
        data={"csrf_token": browser.csrf_token, "question": ["Do you deliver?", ""], "answer": ["Yes.", ""]},
        headers=headers,
    )
    assert faq.status_code == 303

    upload = await client.post(
        f"{base}/files",
        data={"csrf_token": browser.csrf_token},
        files={"file": ("notes.txt", b"Tea notes: keep green tea away from light.")},
        headers=headers,
    )
    assert upload.status_code == 303
    duplicate = await client.post(
        f"{base}/files",
        data={"csrf_token": browser.csrf_token},
        files={"file": ("again.txt", b"Tea notes: keep green tea away from light.")},
        headers=headers,
    )
    assert duplicate.status_code == 409 and "notes.txt" in duplicate.text
    bad_url = await client.post(
        f"{base}/url", data={"csrf_token": browser.csrf_token, "url": "ftp://x", "max_pages": "5"}, headers=headers
    )
    assert bad_url.status_code == 400 and 'value="ftp://x"' in bad_url.text
    no_csrf = await client.post(f"{base}/text", data={"text": "x"}, headers=headers)
    assert no_csrf.status_code == 403

    await drain_jobs()
    listing = await client.get(base, headers=headers)
    assert 'data-poll="0"' in listing.text
    ids = re.findall(rf"/en/bots/{bot['id']}/knowledge/([0-9a-f-]{{36}})\"", listing.text)
    assert len(set(ids)) == 3
    api = (await client.get(f"/api/v1/bots/{bot['id']}/knowledge", headers=account.headers)).json()
    faq_id = next(item["id"] for item in api["items"] if item["kind"] == "faq")
    text_id = next(item["id"] for item in api["items"] if item["kind"] == "text")

    source_page = await client.get(f"{base}/{faq_id}", headers=headers)
    assert source_page.status_code == 200
    assert "Do you deliver?" in source_page.text and "Passages the bot answers from" in source_page.text
    edited = await client.post(
        f"{base}/{faq_id}/faq/0",
        data={"csrf_token": browser.csrf_token, "question": "Do you deliver?", "answer": "Yes, even on Sundays."},
        headers=headers,
    )
    assert edited.status_code == 303
    await drain_jobs()
    assert "Yes, even on Sundays." in (await client.get(f"{base}/{faq_id}", headers=headers)).text

    text_page = await client.get(f"{base}/{text_id}", headers=headers)
    assert "We are open from 9 to 18 every day." in text_page.text
    confirm = await client.get(f"{base}/{text_id}/delete", headers=headers)
    assert confirm.status_code == 200 and "Yes, delete this source" in confirm.text
    deleted = await client.post(f"{base}/{text_id}/delete", data={"csrf_token": browser.csrf_token}, headers=headers)
    assert deleted.status_code == 303 and deleted.headers["location"].endswith("?done=deleted")
    assert (await client.get(f"{base}/{text_id}", headers=headers)).status_code == 404
    assert await drain_jobs() == ["rebuilt"]

    pair_delete = await client.post(
        f"{base}/{faq_id}/faq/0/delete", data={"csrf_token": browser.csrf_token}, headers=headers
    )
    assert pair_delete.status_code == 303 and pair_delete.headers["location"].endswith("?done=deleted")


async def test_web_page_source_page_has_resync_and_schedule(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    source_id = await add(client, account, bot, "url", url="https://shop.example/prices")
    browser = await sign_in_browser(account)
    headers = browser_headers(browser)
    base = f"/ru/bots/{bot['id']}/knowledge/{source_id}"
    page = await client.get(base, headers=headers)
    assert page.status_code == 200 and 'name="sync_interval_hours"' in page.text
    saved = await client.post(
        f"{base}/schedule", data={"csrf_token": browser.csrf_token, "sync_interval_hours": "24"}, headers=headers
    )
    assert saved.status_code == 303
    detail = (await client.get(f"/api/v1/bots/{bot['id']}/knowledge/{source_id}", headers=account.headers)).json()
    assert detail["sync_interval_hours"] == 24
    resync = await client.post(f"{base}/resync", data={"csrf_token": browser.csrf_token}, headers=headers)
    assert resync.status_code == 303


async def test_viewer_pages_have_no_forms_and_bot_page_links_the_tools(
    client: httpx.AsyncClient,
    owner: tuple[Account, dict[str, Any]],  # noqa: F811
) -> None:
    account, bot = owner
    await add(client, account, bot, "text", title="Hours", text="We are open from 9 to 18 every day.")
    viewer = await make_account(client)
    await add_tenant_member(account.tenant_id, viewer, "viewer")
    # The page picks the viewer's first workspace; make A's the one they see by leaving only that membership.
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import TenantMember

    async with get_sessionmaker()() as db:
        from sqlalchemy import delete

        await db.execute(
            delete(TenantMember).where(
                TenantMember.user_id == uuid.UUID(str(viewer.me["id"])),
                TenantMember.tenant_id != uuid.UUID(account.tenant_id),
            )
        )
        await db.commit()
    browser = await sign_in_browser(viewer)
    page = await client.get(f"/en/bots/{bot['id']}/knowledge", headers=browser_headers(browser))
    assert page.status_code == 200 and "Hours" in page.text
    assert "/knowledge/text" not in page.text
    refused = await client.post(
        f"/en/bots/{bot['id']}/knowledge/text",
        data={"csrf_token": browser.csrf_token, "text": "x"},
        headers=browser_headers(browser),
    )
    assert refused.status_code == 403

    owner_browser = await sign_in_browser(account)
    bot_page = await client.get(f"/en/bots/{bot['id']}", headers=browser_headers(owner_browser))
    for link in ("/knowledge", "/console", "/unanswered"):
        assert f'href="/en/bots/{bot["id"]}{link}"' in bot_page.text, link
    assert 'id="section-knowledge"' in bot_page.text and "Hours" in bot_page.text
