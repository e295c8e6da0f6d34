"""Telegram connection API against the fake Bot API: connect, reuse, wrong tokens, modes, state, disconnect, roles."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select

from tests.control_plane.bots.helpers import add_tenant_member, set_tenant
from tests.factories import make_account, make_bot
from tests.fakes import FakeTelegramAPI, make_token

TOKEN = make_token(424242)
OTHER_TOKEN = make_token(515151)


def url(bot_id: str) -> str:
    return f"/api/v1/bots/{bot_id}/channels/telegram"


async def connection_rows(bot_id: str | None = None) -> list[object]:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import ChannelConnection

    async with get_sessionmaker()() as db:
        statement = select(ChannelConnection)
        if bot_id:
            statement = statement.where(ChannelConnection.bot_id == uuid.UUID(bot_id))
        return list(await db.scalars(statement))


async def test_connect_in_polling_mode_stores_the_token_encrypted(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    telegram.register_bot(TOKEN, username="shop_bot")
    account = await make_account(client)
    bot = await make_bot(client, account)

    response = await client.post(url(bot["id"]), json={"token": f"  {TOKEN} "}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"bot_username": "shop_bot", "mode": "polling"}  # DOMAIN_URL is http://testserver
    (row,) = await connection_rows(bot["id"])
    assert row.kind == "telegram" and row.external_id == "424242" and row.display_name == "shop_bot"
    assert TOKEN.encode() not in row.credentials_encrypted
    assert "webhook_secret" not in row.settings
    methods = [call.method for call in telegram.calls(TOKEN)]
    assert methods[0] == "getMe" and "deleteWebhook" in methods and "setWebhook" not in methods
    # The command menu in every language we speak, plus the default.
    for language in ("", "uz", "ru", "en"):
        assert [c["command"] for c in telegram.commands(TOKEN, language_code=language)] == ["start", "help"]


async def test_connect_in_webhook_mode_sets_a_secret_webhook(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    webhook_mode.register_bot(TOKEN, username="shop_bot")
    account = await make_account(client)
    bot = await make_bot(client, account)

    response = await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "webhook"
    hook = webhook_mode.webhook(TOKEN)
    assert hook["url"] == f"http://testserver/webhooks/telegram/{bot['id']}"
    assert hook["allowed_updates"] == ["message", "edited_message", "callback_query", "my_chat_member"]
    assert hook["secret_token"] and len(hook["secret_token"]) >= 32
    (row,) = await connection_rows(bot["id"])
    assert hook["secret_token"] not in str(row.settings)  # stored encrypted

    state = (await client.get(url(bot["id"]), headers=account.headers)).json()
    assert state["connected"] is True and state["mode"] == "webhook" and state["bot_username"] == "shop_bot"
    assert state["webhook"]["url"] == hook["url"]
    assert state["webhook"]["pending_update_count"] == 0


async def test_wrong_token_is_a_translated_400_and_nothing_is_saved(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    account = await make_account(client)
    bot = await make_bot(client, account)

    response = await client.post(
        url(bot["id"]), json={"token": TOKEN}, headers={**account.headers, "Accept-Language": "ru"}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "telegram_token_rejected"
    assert TOKEN not in response.text
    assert await connection_rows() == []


@pytest.mark.parametrize("token", ["not-a-token", "123:short", "abc:TEST-token_0123456789abcdefghijklmno", ""])
async def test_malformed_token_is_422_without_calling_telegram(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI, token: str
) -> None:
    account = await make_account(client)
    bot = await make_bot(client, account)

    response = await client.post(url(bot["id"]), json={"token": token}, headers=account.headers)

    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "token"
    assert telegram.calls() == []
    assert await connection_rows() == []


async def test_unreachable_telegram_is_503(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.settings import get_settings

    monkeypatch.setattr(get_settings(), "telegram_api_base_url", "http://127.0.0.1:9")  # discard port: refused
    account = await make_account(client)
    bot = await make_bot(client, account)

    response = await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "telegram_unavailable"
    assert await connection_rows() == []


async def test_refused_webhook_saves_nothing(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    webhook_mode.allow_http_webhooks = False  # the cloud API refuses http:// webhooks
    webhook_mode.register_bot(TOKEN)
    account = await make_account(client)
    bot = await make_bot(client, account)

    response = await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)

    assert response.status_code == 502
    assert await connection_rows() == []


async def test_token_used_by_another_bot_is_409(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    webhook_mode.register_bot(TOKEN, username="shop_bot")
    owner = await make_account(client)
    await set_tenant(owner.tenant_id, plan="business")
    first = await make_bot(client, owner)
    second = await make_bot(client, owner, name="Second")
    assert (await client.post(url(first["id"]), json={"token": TOKEN}, headers=owner.headers)).status_code == 200
    hook_before = webhook_mode.webhook(TOKEN)

    same_tenant = await client.post(url(second["id"]), json={"token": TOKEN}, headers=owner.headers)
    stranger = await make_account(client)
    foreign_bot = await make_bot(client, stranger)
    other_tenant = await client.post(url(foreign_bot["id"]), json={"token": TOKEN}, headers=stranger.headers)

    for response in (same_tenant, other_tenant):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "telegram_token_in_use"
    assert len(await connection_rows()) == 1
    # Refused before any Telegram call: the first bot keeps its webhook.
    assert webhook_mode.webhook(TOKEN) == hook_before


async def test_posting_again_replaces_the_token_and_releases_the_old_webhook(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    webhook_mode.register_bot(TOKEN, username="old_bot")
    webhook_mode.register_bot(OTHER_TOKEN, username="new_bot")
    account = await make_account(client)
    bot = await make_bot(client, account)
    assert (await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)).status_code == 200

    again = await client.post(url(bot["id"]), json={"token": OTHER_TOKEN}, headers=account.headers)

    assert again.status_code == 200 and again.json()["bot_username"] == "new_bot"
    assert webhook_mode.webhook(TOKEN)["url"] == ""
    assert webhook_mode.webhook(OTHER_TOKEN)["url"].endswith(f"/webhooks/telegram/{bot['id']}")
    (row,) = await connection_rows(bot["id"])
    assert row.display_name == "new_bot" and row.external_id == "515151"
    # The released token is free for another bot now.
    stranger = await make_account(client)
    other = await make_bot(client, stranger)
    assert (await client.post(url(other["id"]), json={"token": TOKEN}, headers=stranger.headers)).status_code == 200


async def test_reconnecting_the_same_token_keeps_the_webhook_secret(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    webhook_mode.register_bot(TOKEN)
    account = await make_account(client)
    bot = await make_bot(client, account)
    await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)
    secret = webhook_mode.webhook(TOKEN)["secret_token"]

    assert (await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)).status_code == 200

    assert webhook_mode.webhook(TOKEN)["secret_token"] == secret
    assert len(await connection_rows()) == 1


async def test_disconnect_removes_webhook_and_row(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    webhook_mode.register_bot(TOKEN)
    account = await make_account(client)
    bot = await make_bot(client, account)
    await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)

    response = await client.delete(url(bot["id"]), headers=account.headers)

    assert response.status_code == 204
    assert webhook_mode.webhook(TOKEN)["url"] == ""
    assert await connection_rows() == []
    assert (await client.get(url(bot["id"]), headers=account.headers)).json() == {
        "connected": False,
        "bot_username": None,
        "mode": None,
        "status": None,
        "webhook": None,
    }
    assert (await client.delete(url(bot["id"]), headers=account.headers)).status_code == 204  # idempotent


async def test_disconnect_works_when_the_token_was_revoked(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    telegram.register_bot(TOKEN)
    account = await make_account(client)
    bot = await make_bot(client, account)
    await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)
    telegram.revoke_bot(TOKEN)

    state = (await client.get(url(bot["id"]), headers=account.headers)).json()
    assert state["connected"] is True and state["webhook"] is None  # best effort: Telegram said 401

    assert (await client.delete(url(bot["id"]), headers=account.headers)).status_code == 204
    assert await connection_rows() == []


async def test_disconnect_works_when_the_stored_token_is_unreadable(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import ChannelConnection

    telegram.register_bot(TOKEN)
    account = await make_account(client)
    bot = await make_bot(client, account)
    await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)
    # As if written under an ENCRYPTION_KEY since dropped: nothing to release at Telegram, the row must still go.
    async with get_sessionmaker()() as db:
        row = await db.scalar(select(ChannelConnection).where(ChannelConnection.bot_id == uuid.UUID(bot["id"])))
        assert row is not None
        row.credentials_encrypted = b"not a ciphertext"
        await db.commit()

    assert (await client.delete(url(bot["id"]), headers=account.headers)).status_code == 204
    assert await connection_rows() == []


async def test_viewers_read_but_cannot_change(client: httpx.AsyncClient, telegram: FakeTelegramAPI) -> None:
    telegram.register_bot(TOKEN)
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    viewer = await make_account(client)
    await add_tenant_member(owner.tenant_id, viewer, "viewer")
    headers = {**viewer.headers, "X-Tenant-Id": owner.tenant_id}

    assert (await client.post(url(bot["id"]), json={"token": TOKEN}, headers=headers)).status_code == 403
    assert (await client.delete(url(bot["id"]), headers=headers)).status_code == 403
    assert (await client.get(url(bot["id"]), headers=headers)).status_code == 200
    assert telegram.calls() == []

    editor = await make_account(client)
    await add_tenant_member(owner.tenant_id, editor, "editor")
    editor_headers = {**editor.headers, "X-Tenant-Id": owner.tenant_id}
    assert (await client.post(url(bot["id"]), json={"token": TOKEN}, headers=editor_headers)).status_code == 200


async def test_other_tenants_bot_is_not_found(client: httpx.AsyncClient, telegram: FakeTelegramAPI) -> None:
    telegram.register_bot(TOKEN)
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    stranger = await make_account(client)

    for method in ("get", "delete"):
        assert (await client.request(method, url(bot["id"]), headers=stranger.headers)).status_code == 404
    response = await client.post(url(bot["id"]), json={"token": TOKEN}, headers=stranger.headers)
    assert response.status_code == 404
    assert telegram.calls() == []


async def test_plan_without_telegram_is_402(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from billing.plans import plan_for
    from control_plane.channels import service

    telegram.register_bot(TOKEN)
    monkeypatch.setattr(
        service, "plan_for", lambda code: dataclasses.replace(plan_for(code), channels=frozenset({"widget"}))
    )
    account = await make_account(client)
    bot = await make_bot(client, account)

    response = await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "channel_not_in_plan"
    assert telegram.calls() == []


async def test_connect_and_disconnect_are_audited_without_the_token(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import AuditLog

    telegram.register_bot(TOKEN, username="shop_bot")
    account = await make_account(client)
    bot = await make_bot(client, account)
    await client.post(url(bot["id"]), json={"token": TOKEN}, headers=account.headers)
    await client.delete(url(bot["id"]), headers=account.headers)

    async with get_sessionmaker()() as db:
        rows = list(await db.scalars(select(AuditLog).where(AuditLog.action.like("channel.telegram.%"))))
        assert await db.scalar(select(func.count()).select_from(AuditLog)) >= 2
    assert [row.action for row in rows] == ["channel.telegram.connected", "channel.telegram.disconnected"]
    assert all(TOKEN not in str(row.data) for row in rows)
