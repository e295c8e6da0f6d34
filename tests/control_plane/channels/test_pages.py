"""The bot page's Channels section against the fake Bot API: connect, errors, change token, disconnect, CSRF, roles."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from tests.control_plane.bots.helpers import add_tenant_member, audit_actions, browser_client
from tests.factories import make_account, make_bot
from tests.fakes import FakeTelegramAPI, make_token

TOKEN = make_token(424242)
OTHER_TOKEN = make_token(515151)
LANGS = ("en", "ru", "uz")

# What the pages must say, per language (kept here so a catalog losing a translation fails a test).
CONNECTED = {"en": "Connected", "ru": "Подключён", "uz": "Ulangan"}
REJECTED = {
    "en": "Telegram did not accept this token.",
    "ru": "Telegram не принял этот токен.",
    "uz": "Telegram bu tokenni qabul qilmadi.",
}


def connect_url(lang: str, bot_id: str) -> str:
    return f"/{lang}/bots/{bot_id}/channels/telegram"


async def connection_rows(bot_id: str | None = None) -> list[object]:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import ChannelConnection

    async with get_sessionmaker()() as db:
        statement = select(ChannelConnection)
        if bot_id:
            statement = statement.where(ChannelConnection.bot_id == uuid.UUID(bot_id))
        return list(await db.scalars(statement))


@pytest.mark.parametrize("lang", LANGS)
async def test_connect_shows_the_username_on_the_bot_page(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI, lang: str
) -> None:
    telegram.register_bot(TOKEN, username="shop_bot")
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        before = await http.get(f"/{lang}/bots/{bot['id']}")
        response = await http.post(
            connect_url(lang, bot["id"]), data={"csrf_token": browser.csrf_token, "token": f" {TOKEN} "}
        )
        page = await http.get(response.headers["location"])

    assert before.status_code == 200
    assert 'id="section-channels"' in before.text and 'name="token"' in before.text
    assert "@BotFather" in before.text
    assert 'id="channel-telegram"' in before.text  # the placeholder is replaced
    assert response.status_code == 303
    assert response.headers["location"] == f"/{lang}/bots/{bot['id']}?channels=connected#section-channels"
    assert page.status_code == 200
    assert '<a href="https://t.me/shop_bot"' in page.text and "@shop_bot" in page.text
    assert CONNECTED[lang] in page.text
    assert 'class="alert alert-success"' in page.text
    assert f'action="/{lang}/bots/{bot["id"]}/channels/telegram/delete"' in page.text
    assert "data-confirm=" in page.text
    assert TOKEN not in page.text  # the token is never written back into a page
    (row,) = await connection_rows(bot["id"])
    assert row.display_name == "shop_bot"
    assert "channel.telegram.connected" in await audit_actions(owner.tenant_id)


@pytest.mark.parametrize("lang", LANGS)
async def test_wrong_token_shows_the_translated_error_and_saves_nothing(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI, lang: str
) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        response = await http.post(
            connect_url(lang, bot["id"]), data={"csrf_token": browser.csrf_token, "token": TOKEN}
        )

    assert response.status_code == 400
    assert REJECTED[lang] in response.text
    assert 'class="alert alert-error"' in response.text
    assert TOKEN not in response.text
    assert await connection_rows() == []


async def test_malformed_token_is_refused_without_calling_telegram(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        response = await http.post(
            connect_url("ru", bot["id"]), data={"csrf_token": browser.csrf_token, "token": "not-a-token"}
        )

    assert response.status_code == 422
    assert "Это не похоже на токен Telegram-бота" in response.text
    assert telegram.calls() == []
    assert await connection_rows() == []


async def test_token_of_another_bot_and_unreachable_telegram_save_nothing(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.settings import get_settings

    telegram.register_bot(TOKEN, username="shop_bot")
    first_owner = await make_account(client)
    first = await make_bot(client, first_owner)
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, first_owner) as (http, browser):
        assert browser is not None
        ok = await http.post(connect_url("en", first["id"]), data={"csrf_token": browser.csrf_token, "token": TOKEN})
        assert ok.status_code == 303
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        in_use = await http.post(connect_url("en", bot["id"]), data={"csrf_token": browser.csrf_token, "token": TOKEN})
        monkeypatch.setattr(get_settings(), "telegram_api_base_url", "http://127.0.0.1:9")  # refused at once
        unreachable = await http.post(
            connect_url("uz", bot["id"]), data={"csrf_token": browser.csrf_token, "token": OTHER_TOKEN}
        )

    assert in_use.status_code == 409
    assert "This token is already connected to another bot." in in_use.text
    assert unreachable.status_code == 503
    assert "Hozir Telegram bilan bogʻlanib boʻlmadi." in unreachable.text
    assert 'class="alert alert-error"' in unreachable.text
    assert await connection_rows(bot["id"]) == []
    assert len(await connection_rows()) == 1


async def test_change_token_and_disconnect(app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI) -> None:
    telegram.register_bot(TOKEN, username="old_bot")
    telegram.register_bot(OTHER_TOKEN, username="new_bot")
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        form = {"csrf_token": browser.csrf_token}
        assert (await http.post(connect_url("en", bot["id"]), data={**form, "token": TOKEN})).status_code == 303
        changed = await http.post(connect_url("en", bot["id"]), data={**form, "token": OTHER_TOKEN})
        page = await http.get(f"/en/bots/{bot['id']}")
        assert "@new_bot" in page.text and "@old_bot" not in page.text
        assert "Change token" in page.text

        gone = await http.post(f"/ru/bots/{bot['id']}/channels/telegram/delete", data=form)
        after = await http.get(gone.headers["location"])

    assert changed.status_code == 303
    assert gone.status_code == 303
    assert gone.headers["location"] == f"/ru/bots/{bot['id']}?channels=disconnected#section-channels"
    assert await connection_rows() == []
    assert "@new_bot" not in after.text
    assert 'name="token"' in after.text  # the connect form is back
    assert 'class="alert alert-success"' in after.text
    assert "channel.telegram.disconnected" in await audit_actions(owner.tenant_id)


async def test_missing_csrf_token_is_403(app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI) -> None:
    telegram.register_bot(TOKEN)
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, _browser):
        connect = await http.post(connect_url("en", bot["id"]), data={"token": TOKEN})
        disconnect = await http.post(f"/en/bots/{bot['id']}/channels/telegram/delete", data={})

    assert connect.status_code == 403 and disconnect.status_code == 403
    assert telegram.calls() == []
    assert await connection_rows() == []


async def test_anonymous_post_is_sent_to_sign_in(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, None) as (http, _):
        response = await http.post(connect_url("en", bot["id"]), data={"token": TOKEN})
    assert response.status_code == 303 and response.headers["location"].startswith("/en/login?next=")
    assert telegram.calls() == []


async def test_viewer_sees_the_state_but_cannot_connect_or_disconnect(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    telegram.register_bot(TOKEN, username="shop_bot")
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    viewer = await make_account(client)
    await add_tenant_member(owner.tenant_id, viewer, "viewer")
    as_owner = {"X-Tenant-Id": owner.tenant_id}
    async with browser_client(app, viewer) as (http, browser):
        assert browser is not None
        form = {"csrf_token": browser.csrf_token}
        page = await http.get(f"/en/bots/{bot['id']}", headers=as_owner)
        connect = await http.post(connect_url("en", bot["id"]), data={**form, "token": TOKEN}, headers=as_owner)
    assert page.status_code == 200
    assert 'name="token"' not in page.text and "Only editors can connect channels." in page.text
    assert connect.status_code in (403, 404)
    assert telegram.calls() == []
    assert await connection_rows() == []

    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        ok = await http.post(connect_url("en", bot["id"]), data={"csrf_token": browser.csrf_token, "token": TOKEN})
        assert ok.status_code == 303
    async with browser_client(app, viewer) as (http, browser):
        assert browser is not None
        page = await http.get(f"/en/bots/{bot['id']}", headers=as_owner)
        disconnect = await http.post(
            f"/en/bots/{bot['id']}/channels/telegram/delete", data={"csrf_token": browser.csrf_token}, headers=as_owner
        )
    assert "@shop_bot" in page.text and "Disconnect Telegram" not in page.text
    assert disconnect.status_code in (403, 404)
    assert len(await connection_rows(bot["id"])) == 1


async def test_plan_without_telegram_shows_a_notice_instead_of_the_form(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from billing import plans

    telegram.register_bot(TOKEN)
    free = plans.PLANS["free"]
    monkeypatch.setitem(plans.PLANS, "free", dataclasses.replace(free, channels=frozenset({"widget"})))
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        page = await http.get(f"/en/bots/{bot['id']}")
        refused = await http.post(connect_url("en", bot["id"]), data={"csrf_token": browser.csrf_token, "token": TOKEN})

    assert "Your plan does not include Telegram." in page.text and 'name="token"' not in page.text
    assert refused.status_code == 402 and "Your plan does not include Telegram." in refused.text
    assert await connection_rows() == []


@pytest.mark.parametrize("lang", LANGS)
async def test_whatsapp_and_instagram_are_a_plan_notice(
    app: object, client: httpx.AsyncClient, telegram: FakeTelegramAPI, lang: str
) -> None:
    notice = {
        "en": "Available on the Business plan.",
        "ru": "Доступно в тарифе Business.",
        "uz": "Business tarifida mavjud.",
    }
    owner = await make_account(client)  # the free trial: no WhatsApp or Instagram
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, _):
        page = await http.get(f"/{lang}/bots/{bot['id']}")
    assert 'id="channel-whatsapp"' in page.text and 'id="channel-instagram"' in page.text
    assert page.text.count(notice[lang]) == 2


async def test_webhook_mode_shows_the_mode_and_a_refused_webhook_saves_nothing(
    app: object, client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    webhook_mode.register_bot(TOKEN, username="shop_bot")
    owner = await make_account(client)
    bot = await make_bot(client, owner)
    async with browser_client(app, owner) as (http, browser):
        assert browser is not None
        form = {"csrf_token": browser.csrf_token, "token": TOKEN}
        webhook_mode.allow_http_webhooks = False  # the cloud API refuses http:// webhooks, after the row was flushed
        refused = await http.post(connect_url("en", bot["id"]), data=form)
        assert refused.status_code == 502 and "Telegram refused to set up the bot." in refused.text
        assert await connection_rows() == []  # the savepoint undid the flushed row

        webhook_mode.allow_http_webhooks = True
        assert (await http.post(connect_url("ru", bot["id"]), data=form)).status_code == 303
        page = await http.get(f"/ru/bots/{bot['id']}")

    assert "Вебхук (Telegram сам присылает нам сообщения)" in page.text
    assert "Работает" in page.text and "@shop_bot" in page.text
    assert len(await connection_rows(bot["id"])) == 1
