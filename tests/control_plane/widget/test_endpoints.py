"""The widget's HTTP API: the script, config, origins and CORS, sending (limits, idempotency, the tenant stream),
history, and the bot page section."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import update

from bot_runtime import contract
from bot_runtime.i18n import translations_for
from tests.control_plane.bots.helpers import browser_client
from tests.control_plane.widget.helpers import (
    OTHER_SITE,
    SITE,
    make_widget_bot,
    new_message_id,
    new_visitor,
    send,
)


@pytest.fixture
async def redis() -> Redis:
    import os

    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client  # type: ignore[misc]
    await client.aclose()


# ------------------------------------------------------------------------------------------------ widget.js


async def test_widget_js_is_served_as_a_cacheable_cross_origin_script(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget.js", headers={"Origin": OTHER_SITE})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "max-age=3600" in response.headers["cache-control"]
    assert "x-frame-options" not in response.headers
    body = response.text
    assert "@@WIDGET_CSS@@" not in body and ".bf-launcher" in body  # the stylesheet is inlined
    assert "attachShadow" in body and "data-bot" in body
    etag = response.headers["etag"]
    again = await client.get("/widget.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert (await client.head("/widget.js")).status_code == 200


# ------------------------------------------------------------------------------------------------ config


async def test_config_gives_the_look_and_translated_strings(client: httpx.AsyncClient) -> None:
    wb = await make_widget_bot(
        client,
        welcome_message="Welcome to the shop!",
        widget={"color": "#fde047", "title": "Shop chat", "position": "left", "greeting": "Questions? Ask me."},
    )
    response = await client.get(f"{wb.api}/config", params={"lang": "ru-RU"}, headers={"Origin": SITE})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SITE
    assert "Origin" in response.headers["vary"]
    config = response.json()
    assert config["public_id"] == wb.public_id
    assert (config["title"], config["position"], config["color"]) == ("Shop chat", "left", "#fde047")
    assert config["greeting"] == "Questions? Ask me." and config["welcome_message"] == "Welcome to the shop!"
    assert config["text_color"] == "#111827"  # dark text on a light yellow
    assert config["language"] == "ru"
    ru = translations_for("ru")
    assert config["strings"]["open"] == ru.gettext("Open chat")
    assert config["strings"]["send"] == ru.gettext("Send")
    assert config["strings"]["chat_label"] == ru.gettext("Chat with %(name)s") % {"name": "Shop chat"}
    assert config["avatar_url"] is None
    assert "allowed_origins" not in config  # only what every visitor may see


async def test_config_language_owner_choice_then_browser_then_bot(client: httpx.AsyncClient) -> None:
    wb = await make_widget_bot(client, language="uz")
    headers = {"Origin": SITE}
    assert (await client.get(f"{wb.api}/config", params={"lang": "en-GB"}, headers=headers)).json()["language"] == "en"
    accept = {**headers, "Accept-Language": "ru,en;q=0.5"}
    assert (await client.get(f"{wb.api}/config", headers=accept)).json()["language"] == "ru"
    assert (await client.get(f"{wb.api}/config", params={"lang": "de"}, headers=headers)).json()["language"] == "uz"
    fixed = await make_widget_bot(client, widget={"language": "ru"})
    response = await client.get(f"{fixed.api}/config", params={"lang": "en"}, headers=headers)
    assert response.json()["language"] == "ru"


async def test_config_refuses_other_sites_readably(client: httpx.AsyncClient) -> None:
    wb = await make_widget_bot(client)
    response = await client.get(f"{wb.api}/config", headers={"Origin": OTHER_SITE, "Accept-Language": "ru"})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "origin_refused"
    from control_plane.widget.errors import OriginRefused

    assert error["message"] == translations_for("ru").gettext(OriginRefused.message)
    # Readable by the refused page (so widget.js can say why in the console), and nothing else in it.
    assert response.headers["access-control-allow-origin"] == "*"
    assert wb.bot["name"] not in response.text


async def test_unknown_bot_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/widget/b_nobodyhere/config", headers={"Origin": SITE})
    assert response.status_code == 404


async def test_empty_allowed_list_allows_only_our_own_site(client: httpx.AsyncClient) -> None:
    wb = await make_widget_bot(client, origins=[])
    assert (await client.get(f"{wb.api}/config", headers={"Origin": SITE})).status_code == 403
    # DOMAIN_URL's origin (the tests run with DOMAIN_URL=http://testserver), and the host the request went to.
    own = await client.get(f"{wb.api}/config", headers={"Origin": "http://testserver"})
    assert own.status_code == 200 and own.headers["access-control-allow-origin"] == "http://testserver"
    assert (await client.get(f"{wb.api}/config")).status_code == 200  # same-origin GET: no Origin header
    assert (await client.get(f"{wb.api}/config", headers={"Origin": "null"})).status_code == 403
    response = await send(client, wb, visitor=new_visitor(), origin="http://testserver")
    assert response.status_code == 202


# ------------------------------------------------------------------------------------------------ preflight


async def test_preflight_is_answered_per_bot(client: httpx.AsyncClient) -> None:
    wb = await make_widget_bot(client)
    request_headers = {
        "Origin": SITE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = await client.options(f"{wb.api}/messages", headers=request_headers)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "Content-Type" in allowed.headers["access-control-allow-headers"]
    assert "Origin" in allowed.headers["vary"]

    refused = await client.options(
        f"{wb.api}/messages", headers={**request_headers, "Origin": OTHER_SITE, "Accept-Language": "uz"}
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert refused.json()["error"]["code"] == "origin_refused"
    assert (await client.options(f"{wb.api}/nothing", headers=request_headers)).status_code == 404
    other = await make_widget_bot(client, origins=["https://another.example"])
    assert (await client.options(f"{other.api}/messages", headers=request_headers)).status_code == 403


# ------------------------------------------------------------------------------------------------ sending


async def test_a_message_lands_in_the_tenant_stream_and_wakes_the_runtime(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    wb = await make_widget_bot(client)
    visitor, message_id = new_visitor(), new_message_id()
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(contract.wake_channel())
    try:
        response = await send(
            client,
            wb,
            "Do you deliver to Samarkand?",
            visitor=visitor,
            message_id=message_id,
            **{"Accept-Language": "ru"},
        )
        assert response.status_code == 202, response.text
        assert response.headers["access-control-allow-origin"] == SITE
        accepted_id = response.json()["message_id"]
        woke = None
        for _ in range(20):  # get_message also returns None for the (ignored) subscribe confirmation
            woke = woke or await pubsub.get_message(timeout=0.2)
        assert woke is not None and woke["data"] == wb.tenant_id
    finally:
        await pubsub.aclose()
    entries = await redis.xrange(contract.inbound_stream(wb.tenant_id))
    assert len(entries) == 1
    event = contract.InboundEvent.from_fields(entries[0][1])
    assert event.kind == "widget.message"
    assert event.event_id == f"w:{wb.id}:{message_id}"
    assert event.bot_id == wb.id
    assert event.payload == {
        "visitor_id": visitor,
        "text": "Do you deliver to Samarkand?",
        "language": "ru",
        "reply_to": message_id,
    }
    conversation = await redis.xrange(contract.widget_conversation_stream(wb.tenant_id, wb.id, visitor))
    assert [entry_id for entry_id, _ in conversation] == [accepted_id]
    assert conversation[0][1]["role"] == "visitor" and conversation[0][1]["client_message_id"] == message_id
    ttl = await redis.ttl(contract.widget_conversation_stream(wb.tenant_id, wb.id, visitor))
    assert 0 < ttl <= contract.WIDGET_CONVERSATION_TTL


async def test_a_retried_post_never_creates_a_second_message(client: httpx.AsyncClient, redis: Redis) -> None:
    wb = await make_widget_bot(client)
    visitor, message_id = new_visitor(), new_message_id()
    first = await send(client, wb, "Hello", visitor=visitor, message_id=message_id)
    again = await send(client, wb, "Hello", visitor=visitor, message_id=message_id)
    racing = await asyncio.gather(
        *(send(client, wb, "Hi there", visitor=visitor, message_id="race" + message_id) for _ in range(5))
    )
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert {r.status_code for r in racing} == {202}
    assert len({r.json()["message_id"] for r in racing}) == 1
    assert await redis.xlen(contract.inbound_stream(wb.tenant_id)) == 2
    assert await redis.xlen(contract.widget_conversation_stream(wb.tenant_id, wb.id, visitor)) == 2


async def test_visitors_are_rate_limited_per_visitor_and_per_address(
    client: httpx.AsyncClient, settings, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "widget_limit_per_visitor_per_minute", 2)
    wb = await make_widget_bot(client)
    visitor = new_visitor()
    ids = [new_message_id() for _ in range(3)]
    assert (await send(client, wb, visitor=visitor, message_id=ids[0])).status_code == 202
    assert (await send(client, wb, visitor=visitor, message_id=ids[1])).status_code == 202
    limited = await send(client, wb, visitor=visitor, message_id=ids[2], **{"Accept-Language": "ru"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert limited.headers["access-control-allow-origin"] == SITE  # the widget can read why
    assert limited.json()["error"]["code"] == "rate_limited"
    # A retry of a message that was accepted is still answered (it is not a new message).
    assert (await send(client, wb, visitor=visitor, message_id=ids[0])).status_code == 202
    # Another visitor is not affected, until their shared address has sent five visitors' worth (2 × 5).
    statuses = [(await send(client, wb, visitor=new_visitor())).status_code for _ in range(9)]
    assert statuses == [202] * 8 + [429]


async def test_message_rules_are_checked_with_readable_errors(client: httpx.AsyncClient, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "max_message_chars", 20)
    wb = await make_widget_bot(client)
    visitor = new_visitor()
    too_long = await send(client, wb, "x" * 21, visitor=visitor)
    assert too_long.status_code == 422
    assert too_long.json()["error"]["fields"][0]["field"] == "text"
    assert too_long.headers["access-control-allow-origin"] == SITE
    assert (await send(client, wb, "x" * 20, visitor=visitor)).status_code == 202
    blank = await send(client, wb, "   ", visitor=visitor)
    assert blank.status_code == 422 and blank.headers["access-control-allow-origin"] == SITE
    bad_visitor = await send(client, wb, "Hi", visitor="short")
    assert bad_visitor.status_code == 422
    # A browser always sends Origin with a POST; without one, or from another site, nothing is accepted.
    assert (await send(client, wb, "Hi", visitor=visitor, origin=None)).status_code == 403
    refused = await send(client, wb, "Hi", visitor=visitor, origin=OTHER_SITE)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


async def test_a_switched_off_bot_or_suspended_workspace_gets_a_notice(client: httpx.AsyncClient, redis: Redis) -> None:
    wb = await make_widget_bot(client)
    response = await client.post(f"/api/v1/bots/{wb.id}/disable", headers=wb.account.headers)
    assert response.status_code == 200, response.text
    off = await send(client, wb, visitor=new_visitor(), **{"Accept-Language": "ru"})
    assert off.status_code == 503
    assert off.json()["error"]["code"] == "widget_unavailable"
    assert off.json()["error"]["message"] == translations_for("ru").gettext(
        "This chat is not available right now. Please try again later."
    )
    assert off.headers["access-control-allow-origin"] == SITE
    assert (await client.get(f"{wb.api}/config", headers={"Origin": SITE})).status_code == 503

    other = await make_widget_bot(client)
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import Tenant

    async with get_sessionmaker()() as db:
        await db.execute(update(Tenant).where(Tenant.id == uuid.UUID(other.tenant_id)).values(status="suspended"))
        await db.commit()
    assert (await send(client, other, visitor=new_visitor())).status_code == 503
    assert await redis.xlen(contract.inbound_stream(other.tenant_id)) == 0


# ------------------------------------------------------------------------------------------------ history


async def test_history_returns_the_conversation_in_order(client: httpx.AsyncClient, redis: Redis) -> None:
    wb = await make_widget_bot(client)
    visitor, message_id = new_visitor(), new_message_id()
    accepted = (await send(client, wb, "Do you deliver?", visitor=visitor, message_id=message_id)).json()
    # What the runtime writes as the reply (bot_runtime/channels/widget.py).
    key = contract.widget_conversation_stream(wb.tenant_id, wb.id, visitor)
    reply_id = await redis.xadd(key, {"role": "bot", "text": "Yes, every day.", "reply_to": message_id, "at": "1.5"})
    response = await client.get(f"{wb.api}/history", params={"visitor_id": visitor}, headers={"Origin": SITE})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SITE
    history = response.json()
    assert [(m["id"], m["role"], m["text"]) for m in history["messages"]] == [
        (accepted["message_id"], "visitor", "Do you deliver?"),
        (reply_id, "bot", "Yes, every day."),
    ]
    assert history["messages"][1]["reply_to"] == message_id
    assert history["last_id"] == reply_id
    # Another visitor (or the same visitor id on another bot) sees nothing of it.
    empty = await client.get(f"{wb.api}/history", params={"visitor_id": new_visitor()}, headers={"Origin": SITE})
    assert empty.json() == {"messages": [], "last_id": None}
    other = await make_widget_bot(client)
    assert (await client.get(f"{other.api}/history", params={"visitor_id": visitor})).json()["messages"] == []
    refused = await client.get(f"{wb.api}/history", params={"visitor_id": visitor}, headers={"Origin": OTHER_SITE})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


# ------------------------------------------------------------------------------------------------ bot page


async def test_bot_page_shows_the_embed_code_and_preview(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    wb = await make_widget_bot(client, origins=[])
    async with browser_client(app, wb.account) as (http, _browser):
        page = await http.get(f"/en/bots/{wb.id}")
    assert page.status_code == 200, page.text[:500]
    html = page.text
    # The embed code, escaped as text inside the code block.
    snippet = f"&lt;script src=&#34;http://testserver/widget.js&#34; data-bot=&#34;{wb.public_id}&#34; async&gt;"
    assert snippet + "&lt;/script&gt;" in html
    assert 'data-copy-target="#widget-embed-code"' in html
    assert "data-widget-preview" in html and f'data-bot="{wb.public_id}"' in html
    assert "Websites allowed to show the widget" in html  # the hint for an empty allowed list
    assert "&lt;/body&gt;" in html  # the placement hint, escaped
