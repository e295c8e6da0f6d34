"""Bots API: create, list, read, partial update, enable/disable, delete, roles, validation and auditing."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.control_plane.bots.helpers import (
    add_tenant_member,
    audit_actions,
    make_bot_only_member,
    set_tenant,
)
from tests.factories import make_account, make_bot

BOT_FIELDS = {
    "id",
    "name",
    "description",
    "instructions",
    "language",
    "welcome_message",
    "fallback_message",
    "is_enabled",
    "strict",
    "public_id",
    "allowed_origins",
    "avatar_url",
    "widget",
    "created_at",
    "updated_at",
}


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Every call of the runtime publish hook, as (tenant_id, bot_id)."""
    from control_plane.bots import service

    calls: list[tuple[uuid.UUID, uuid.UUID]] = []

    async def record(db: object, tenant_id: uuid.UUID, bot_id: uuid.UUID) -> None:
        calls.append((tenant_id, bot_id))

    monkeypatch.setattr(service, "publish_bot_change", record)
    return calls


async def test_create_returns_the_whole_bot(client: httpx.AsyncClient, published: list) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner, name="  Shop helper  ", language="ru")
    assert set(bot) == BOT_FIELDS
    assert bot["name"] == "Shop helper"
    assert bot["language"] == "ru"
    assert bot["strict"] is True and bot["is_enabled"] is True
    assert bot["public_id"].startswith("b_")
    assert bot["avatar_url"] is None
    assert bot["allowed_origins"] == []
    assert bot["widget"] == {"color": "#4f46e5", "title": "", "position": "right", "greeting": "", "language": None}
    assert await audit_actions(owner.tenant_id) == ["bot.created"]
    assert published == [(uuid.UUID(owner.tenant_id), uuid.UUID(bot["id"]))]


async def test_create_with_every_field(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    body = {
        "name": "Bakery",
        "description": "Sunrise bakery",
        "language": "uz",
        "instructions": "Be kind.",
        "welcome_message": "Salom!",
        "fallback_message": "Bilmayman.",
        "strict": False,
        "is_enabled": False,
        "allowed_origins": ["https://Bakery.example/", "https://bakery.example:443", "http://localhost:8000"],
        "widget": {"color": "#FF0000", "position": "left", "title": "Chat", "greeting": "Hi", "language": "ru"},
    }
    response = await client.post("/api/v1/bots", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    bot = response.json()
    assert bot["allowed_origins"] == ["https://bakery.example", "http://localhost:8000"]
    assert bot["widget"] == {
        "color": "#ff0000",
        "title": "Chat",
        "position": "left",
        "greeting": "Hi",
        "language": "ru",
    }
    assert bot["strict"] is False and bot["is_enabled"] is False
    assert bot["welcome_message"] == "Salom!"


async def test_list_is_paginated_and_newest_first(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    await set_tenant(owner.tenant_id, plan="business")
    ids = [(await make_bot(client, owner, name=f"Bot {n}"))["id"] for n in range(3)]
    page = await client.get("/api/v1/bots", params={"limit": 2}, headers=owner.headers)
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 3 and body["limit"] == 2 and body["offset"] == 0
    assert [item["id"] for item in body["items"]] == ids[::-1][:2]
    rest = (await client.get("/api/v1/bots", params={"limit": 2, "offset": 2}, headers=owner.headers)).json()
    assert [item["id"] for item in rest["items"]] == [ids[0]]
    bad = await client.get("/api/v1/bots", params={"limit": 0}, headers=owner.headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "limit"


async def test_an_offset_past_any_listing_is_refused_not_a_500(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    await make_bot(client, owner)
    response = await client.get(
        "/api/v1/bots", params={"offset": 10**20}, headers=owner.headers | {"Accept-Language": "ru"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == "offset"
    assert "слишком" in response.json()["error"]["fields"][0]["message"].lower()
    past_end = await client.get("/api/v1/bots", params={"offset": 10**9}, headers=owner.headers)
    assert past_end.status_code == 200 and past_end.json()["items"] == [] and past_end.json()["total"] == 1


async def test_get_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    assert (await client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).json() == bot
    assert (await client.get(f"/api/v1/bots/{uuid.uuid4()}", headers=owner.headers)).status_code == 404
    assert (await client.get("/api/v1/bots/not-a-uuid", headers=owner.headers)).status_code == 422


async def test_patch_changes_only_what_was_sent(client: httpx.AsyncClient, published: list) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner, widget={"color": "#000000", "title": "Old"})
    published.clear()
    response = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"name": "Renamed", "widget": {"title": "New"}, "allowed_origins": ["https://a.example"]},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert updated["description"] == bot["description"]
    assert updated["widget"]["title"] == "New" and updated["widget"]["color"] == "#000000"
    assert updated["allowed_origins"] == ["https://a.example"]
    assert updated["updated_at"] >= bot["updated_at"]
    assert await audit_actions(owner.tenant_id) == ["bot.created", "bot.updated"]
    assert len(published) == 1
    # The same values again change nothing: no audit row, nothing to publish.
    again = await client.patch(f"/api/v1/bots/{bot['id']}", json={"name": "Renamed"}, headers=owner.headers)
    assert again.status_code == 200
    assert await audit_actions(owner.tenant_id) == ["bot.created", "bot.updated"]
    assert len(published) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": "nul\u0000byte"}, "name"),
        ({"instructions": "x" * 10_001}, "instructions"),
        ({"language": "de"}, "language"),
        ({"strict": "maybe"}, "strict"),
        ({"public_id": "b_mine"}, "public_id"),
        ({"widget": {"color": "red"}}, "widget.color"),
        ({"widget": {"position": "top"}}, "widget.position"),
        ({"widget": {"title": "t" * 61}}, "widget.title"),
        ({"allowed_origins": ["https://ok.example", "https://bad.example/path"]}, "allowed_origins.1"),
        ({"allowed_origins": ["https://a.example"] * 51}, "allowed_origins"),
    ],
)
async def test_patch_rejects_bad_input_with_field_messages(client: httpx.AsyncClient, body: dict, field: str) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    response = await client.patch(f"/api/v1/bots/{bot['id']}", json=body, headers=owner.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in {item["field"] for item in error["fields"]}
    assert all(item["message"] for item in error["fields"])


@pytest.mark.parametrize(
    "origin",
    [
        "example.com",
        "ftp://example.com",
        "https://example.com/shop",
        "https://example.com?x=1",
        "https://example.com#top",
        "https://user:pw@example.com",
        "https://*.example.com",
        "https://example.com:99999",
        "https://exa mple.com",
        "javascript:alert(1)",
    ],
)
async def test_create_rejects_bad_origins(client: httpx.AsyncClient, origin: str) -> None:
    owner = await make_account(client)
    response = await client.post(
        "/api/v1/bots", json={"name": "Bot", "allowed_origins": [origin]}, headers=owner.headers
    )
    assert response.status_code == 422
    fields = response.json()["error"]["fields"]
    assert fields == [
        {"field": "allowed_origins.0", "message": "Enter a website address like https://example.com, without a path."}
    ]


async def test_create_requires_a_name_and_a_json_object(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    missing = await client.post("/api/v1/bots", json={"description": "x"}, headers=owner.headers)
    assert missing.status_code == 422
    assert missing.json()["error"]["fields"] == [{"field": "name", "message": "This field is required."}]
    broken = await client.post(
        "/api/v1/bots", content=b"{nope", headers={**owner.headers, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422


async def test_enable_disable(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    off = await client.post(f"/api/v1/bots/{bot['id']}/disable", headers=owner.headers)
    assert off.status_code == 200 and off.json()["is_enabled"] is False
    assert (await client.post(f"/api/v1/bots/{bot['id']}/disable", headers=owner.headers)).status_code == 200
    on = await client.post(f"/api/v1/bots/{bot['id']}/enable", headers=owner.headers)
    assert on.json()["is_enabled"] is True
    assert await audit_actions(owner.tenant_id) == ["bot.created", "bot.disabled", "bot.enabled"]


async def test_delete(client: httpx.AsyncClient, published: list) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    response = await client.delete(f"/api/v1/bots/{bot['id']}", headers=owner.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).status_code == 404
    assert (await client.delete(f"/api/v1/bots/{bot['id']}", headers=owner.headers)).status_code == 404
    assert await audit_actions(owner.tenant_id) == ["bot.created", "bot.deleted"]
    assert published[-1] == (uuid.UUID(owner.tenant_id), uuid.UUID(bot["id"]))


async def test_anonymous_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/bots")).status_code == 401
    assert (await client.post("/api/v1/bots", json={"name": "x"})).status_code == 401


async def test_viewer_reads_editor_edits_owner_deletes(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    await set_tenant(owner.tenant_id, plan="business")
    bot = await make_bot(client, owner)
    viewer, editor = await make_account(client), await make_account(client)
    await add_tenant_member(owner.tenant_id, viewer, "viewer")
    await add_tenant_member(owner.tenant_id, editor, "editor")
    as_viewer = {**viewer.headers, "X-Tenant-Id": owner.tenant_id}
    as_editor = {**editor.headers, "X-Tenant-Id": owner.tenant_id}
    url = f"/api/v1/bots/{bot['id']}"

    assert (await client.get(url, headers=as_viewer)).status_code == 200
    assert (await client.get("/api/v1/bots", headers=as_viewer)).json()["total"] == 1
    assert (await client.patch(url, json={"name": "V"}, headers=as_viewer)).status_code == 403
    assert (await client.post(f"{url}/disable", headers=as_viewer)).status_code == 403
    assert (await client.post("/api/v1/bots", json={"name": "V"}, headers=as_viewer)).status_code == 403
    assert (await client.delete(url, headers=as_viewer)).status_code == 403

    assert (await client.patch(url, json={"name": "E"}, headers=as_editor)).status_code == 200
    assert (await client.post("/api/v1/bots", json={"name": "E2"}, headers=as_editor)).status_code == 201
    assert (await client.delete(url, headers=as_editor)).status_code == 403

    assert (await client.delete(url, headers=owner.headers)).status_code == 204


async def test_bot_only_member_sees_just_that_bot(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    await set_tenant(owner.tenant_id, plan="business")
    shared = await make_bot(client, owner, name="Shared")
    private = await make_bot(client, owner, name="Private")
    member = await make_account(client)
    await make_bot_only_member(owner.tenant_id, shared["id"], member, "editor")

    listed = (await client.get("/api/v1/bots", headers=member.headers)).json()
    assert [item["id"] for item in listed["items"]] == [shared["id"]] and listed["total"] == 1
    assert (await client.patch(f"/api/v1/bots/{shared['id']}", json={"name": "S"}, headers=member.headers)).is_success
    assert (await client.get(f"/api/v1/bots/{private['id']}", headers=member.headers)).status_code == 404
    assert (await client.delete(f"/api/v1/bots/{shared['id']}", headers=member.headers)).status_code == 403
    assert (await client.post("/api/v1/bots", json={"name": "New"}, headers=member.headers)).status_code == 403


async def test_cookie_session_needs_csrf_for_changes(client: httpx.AsyncClient) -> None:
    from tests.control_plane.bots.helpers import sign_in_browser

    owner = await make_account(client)
    browser = await sign_in_browser(owner)
    listed = await client.get("/api/v1/bots", headers=browser.headers())
    assert listed.status_code == 200
    refused = await client.post("/api/v1/bots", json={"name": "No token"}, headers=browser.headers())
    assert refused.status_code == 403
    created = await client.post("/api/v1/bots", json={"name": "Token"}, headers=browser.headers(unsafe=True))
    assert created.status_code == 201


async def test_errors_follow_accept_language(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    response = await client.post("/api/v1/bots", json={"name": ""}, headers={**owner.headers, "Accept-Language": "ru"})
    assert response.status_code == 422
    from bot_runtime.i18n import translations_for

    expected = translations_for("ru").gettext("Enter a name for the bot.")
    assert response.json()["error"]["fields"] == [{"field": "name", "message": expected}]
