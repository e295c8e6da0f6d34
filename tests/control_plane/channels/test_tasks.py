"""The webhook health job: broken webhooks change status and tell the owner once; one tenant's failure is contained."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import select, update

from tests.factories import Account, make_account, make_bot
from tests.fakes import FakeTelegramAPI, make_token

TOKEN = make_token(424242)
OTHER_TOKEN = make_token(515151)


async def connect(client: httpx.AsyncClient, account: Account, token: str) -> str:
    bot = await make_bot(client, account)
    response = await client.post(
        f"/api/v1/bots/{bot['id']}/channels/telegram", json={"token": token}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return str(bot["id"])


async def status_of(bot_id: str) -> str:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import ChannelConnection

    async with get_sessionmaker()() as db:
        value = await db.scalar(select(ChannelConnection.status).where(ChannelConnection.bot_id == uuid.UUID(bot_id)))
    assert value is not None
    return value


async def notifications_and_mail() -> tuple[list[object], list[object]]:
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import Notification, OutboxEmail

    async with get_sessionmaker()() as db:
        return list(await db.scalars(select(Notification))), list(await db.scalars(select(OutboxEmail)))


async def test_healthy_webhook_stays_connected(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    from control_plane.channels.tasks import check_all_telegram_webhooks

    webhook_mode.register_bot(TOKEN)
    bot_id = await connect(client, await make_account(client), TOKEN)

    assert await check_all_telegram_webhooks() == {"checked": 1, "failed": 0, "broken": 0}
    assert await status_of(bot_id) == "connected"
    assert [c.method for c in webhook_mode.calls(TOKEN)][-1] == "getWebhookInfo"


async def test_removed_webhook_is_reported_to_the_owner_once(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    from control_plane.channels.tasks import check_all_telegram_webhooks

    webhook_mode.register_bot(TOKEN, username="shop_bot")
    account = await make_account(client)
    bot_id = await connect(client, account, TOKEN)
    mails_before = len((await notifications_and_mail())[1])  # registration sent a verification mail
    # Someone used the token elsewhere and removed our webhook.
    async with httpx.AsyncClient() as http:
        await http.post(f"{webhook_mode.api_base_url}{TOKEN}/deleteWebhook")

    assert (await check_all_telegram_webhooks())["broken"] == 1
    assert await check_all_telegram_webhooks() == {"checked": 1, "failed": 0, "broken": 1}

    assert await status_of(bot_id) == "webhook_failing"
    notifications, mail = await notifications_and_mail()
    assert len(notifications) == 1
    assert notifications[0].kind == "telegram.webhook_broken"  # type: ignore[attr-defined]
    assert notifications[0].payload["bot_id"] == bot_id  # type: ignore[attr-defined]
    new_mail = mail[mails_before:]
    assert len(new_mail) == 1
    assert new_mail[0].to_address == account.email  # type: ignore[attr-defined]
    assert "@shop_bot" in new_mail[0].subject  # type: ignore[attr-defined]

    state = (await client.get(f"/api/v1/bots/{bot_id}/channels/telegram", headers=account.headers)).json()
    assert state["status"] == "webhook_failing" and state["webhook"]["url"] == ""

    # Connecting again repairs it, and the next check says so.
    await client.post(f"/api/v1/bots/{bot_id}/channels/telegram", json={"token": TOKEN}, headers=account.headers)
    assert (await check_all_telegram_webhooks())["broken"] == 0
    assert await status_of(bot_id) == "connected"


async def test_recent_delivery_errors_with_a_backlog_are_broken(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    from control_plane.channels.tasks import check_all_telegram_webhooks

    webhook_mode.register_bot(TOKEN)
    bot_id = await connect(client, await make_account(client), TOKEN)
    webhook_mode.push_text(TOKEN, 777, "queued")
    fake_bot = webhook_mode._bot(TOKEN)  # what a failed delivery records (see FakeTelegramAPI.deliver_webhook)
    fake_bot.last_error_date, fake_bot.last_error_message = (
        int(time.time()) - 60,
        "Wrong response from the webhook: 502",
    )

    assert (await check_all_telegram_webhooks())["broken"] == 1
    assert await status_of(bot_id) == "webhook_failing"
    notifications, _ = await notifications_and_mail()
    assert "502" in notifications[0].payload["problem"]  # type: ignore[attr-defined]


async def test_revoked_token_is_token_rejected(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    from control_plane.channels.tasks import check_all_telegram_webhooks

    webhook_mode.register_bot(TOKEN)
    bot_id = await connect(client, await make_account(client), TOKEN)
    webhook_mode.revoke_bot(TOKEN)

    await check_all_telegram_webhooks()
    assert await status_of(bot_id) == "token_rejected"


async def test_unreachable_telegram_changes_nothing(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.channels.tasks import check_all_telegram_webhooks
    from control_plane.settings import get_settings

    webhook_mode.register_bot(TOKEN)
    bot_id = await connect(client, await make_account(client), TOKEN)
    monkeypatch.setattr(get_settings(), "telegram_api_base_url", "http://127.0.0.1:9")

    assert (await check_all_telegram_webhooks())["broken"] == 0
    assert await status_of(bot_id) == "connected"
    assert (await notifications_and_mail())[0] == []


async def test_one_tenants_failure_does_not_stop_the_others(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    from control_plane.channels.tasks import check_all_telegram_webhooks
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import ChannelConnection

    webhook_mode.register_bot(TOKEN)
    webhook_mode.register_bot(OTHER_TOKEN)
    broken_bot = await connect(client, await make_account(client), TOKEN)
    healthy_bot = await connect(client, await make_account(client), OTHER_TOKEN)
    async with httpx.AsyncClient() as http:
        await http.post(f"{webhook_mode.api_base_url}{OTHER_TOKEN}/deleteWebhook")
    async with get_sessionmaker()() as db:
        await db.execute(
            update(ChannelConnection)
            .where(ChannelConnection.bot_id == uuid.UUID(broken_bot))
            .values(credentials_encrypted=b"garbage")
        )
        await db.commit()

    result = await check_all_telegram_webhooks()

    assert result == {"checked": 1, "failed": 1, "broken": 1}
    assert await status_of(healthy_bot) == "webhook_failing"


@pytest.mark.parametrize(
    ("domain_url", "mode"),
    [
        ("https://bots.example.com", "webhook"),
        ("https://bots.example.com:8443/", "webhook"),
        ("https://bots.example.com:88", "webhook"),
        ("https://bots.example.com:8000", "polling"),
        ("http://bots.example.com", "polling"),
        ("https://localhost", "polling"),
        ("https://127.0.0.1", "polling"),
        ("https://10.1.2.3", "polling"),
        ("https://192.168.0.10:443", "polling"),
        ("https://myhost", "polling"),
        ("https://shop.local", "polling"),
        ("https://8.8.8.8", "webhook"),
    ],
)
def test_auto_mode_picks_webhook_only_for_a_public_https_address(domain_url: str, mode: str) -> None:
    from control_plane.channels.service import choose_mode
    from control_plane.settings import get_settings

    settings = get_settings().model_copy(update={"domain_url": domain_url, "telegram_mode": "auto"})
    assert choose_mode(settings) == mode
    forced = settings.model_copy(update={"telegram_mode": "polling"})
    assert choose_mode(forced) == "polling"
