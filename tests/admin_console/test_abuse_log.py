"""The abuse log for platform admins: GET /api/v1/admin/abuse-log and the /{lang}/admin/abuse-log page."""

from __future__ import annotations

import uuid

import httpx

from control_plane.kit.db import get_sessionmaker
from control_plane.models import AbuseLogEntry
from tests.admin_console.test_admin import ADMIN_PASSWORD, admin_headers
from tests.control_plane.accounts.helpers import csrf_from
from tests.factories import Account, make_account, make_bot


async def log_refusal(account: Account, bot_id: str, text: str, *, channel: str = "telegram") -> None:
    async with get_sessionmaker()() as db:
        db.add(
            AbuseLogEntry(
                tenant_id=uuid.UUID(account.tenant_id),
                bot_id=uuid.UUID(bot_id),
                channel=channel,
                chat_external_id="777",
                direction="in",
                reason="abuse",
                text=text,
                event_id=f"tg:{uuid.uuid4().hex}:message.out:1",
            )
        )
        await db.commit()


async def test_admins_list_the_abuse_log_of_every_tenant_and_filter_by_tenant(client: httpx.AsyncClient) -> None:
    shop = await make_account(client, email="shop@example.com")
    cafe = await make_account(client, email="cafe@example.com")
    shop_bot = await make_bot(client, shop, name="Shop bot")
    cafe_bot = await make_bot(client, cafe, name="Cafe bot")
    await log_refusal(shop, shop_bot["id"], "rude words one")
    await log_refusal(shop, shop_bot["id"], "rude words two", channel="widget")
    await log_refusal(cafe, cafe_bot["id"], "cafe rude words")
    headers = await admin_headers(client)

    everything = await client.get("/api/v1/admin/abuse-log", headers=headers)
    assert everything.status_code == 200
    assert everything.json()["total"] == 3
    only_shop = await client.get("/api/v1/admin/abuse-log", params={"tenant_id": shop.tenant_id}, headers=headers)
    body = only_shop.json()
    assert body["total"] == 2
    assert {item["text"] for item in body["items"]} == {"rude words one", "rude words two"}
    assert {(item["bot_name"], item["reason"], item["direction"]) for item in body["items"]} == {
        ("Shop bot", "abuse", "in")
    }
    paged = await client.get("/api/v1/admin/abuse-log", params={"limit": 1, "offset": 1}, headers=headers)
    assert (len(paged.json()["items"]), paged.json()["total"]) == (1, 3)

    # Not for tenants: a tenant owner gets 403 (even filtering on their own tenant), nobody signed in gets 401.
    own = await client.get("/api/v1/admin/abuse-log", params={"tenant_id": shop.tenant_id}, headers=shop.headers)
    assert own.status_code == 403
    assert (await client.get("/api/v1/admin/abuse-log", headers=cafe.headers)).status_code == 403
    assert (await client.get("/api/v1/admin/abuse-log")).status_code == 401


async def test_the_abuse_log_page(client: httpx.AsyncClient) -> None:
    shop = await make_account(client, email="shop@example.com")
    bot = await make_bot(client, shop, name="Shop bot")
    await log_refusal(shop, bot["id"], "some <b>rude</b> words")

    assert (await client.get("/en/admin/abuse-log")).headers["location"] == "/en/admin/login"
    token = await csrf_from(client, "/en/admin/login")
    await client.post("/en/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD, "email": ""})
    page = await client.get("/en/admin/abuse-log")
    assert page.status_code == 200
    assert "some &lt;b&gt;rude&lt;/b&gt; words" in page.text and "Shop bot" in page.text
    assert 'href="/en/admin/abuse-log" aria-current="page"' in page.text
    filtered = await client.get("/en/admin/abuse-log", params={"tenant_id": str(uuid.uuid4())})
    assert "rude" not in filtered.text
    assert (await client.get("/en/admin/abuse-log", params={"tenant_id": "junk", "page": "x"})).status_code == 200
    assert (await client.get("/ru/admin/tenants")).status_code == 200
