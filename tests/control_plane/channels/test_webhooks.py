"""``POST /webhooks/telegram/{bot_id}``: the secret header, the body, the tenant stream and the wake-up call."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx

from bot_runtime import contract
from tests.control_plane.bots.helpers import set_tenant
from tests.factories import Account, make_account, make_bot
from tests.fakes import FakeTelegramAPI, make_token

TOKEN = make_token(424242)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def connected_bot(client: httpx.AsyncClient, telegram: FakeTelegramAPI) -> tuple[Account, dict[str, Any], str]:
    """A bot connected in webhook mode; returns (account, bot, the secret Telegram was given)."""
    telegram.register_bot(TOKEN, username="shop_bot")
    account = await make_account(client)
    bot = await make_bot(client, account)
    response = await client.post(
        f"/api/v1/bots/{bot['id']}/channels/telegram", json={"token": TOKEN}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return account, bot, str(telegram.webhook(TOKEN)["secret_token"])


async def inbound(tenant_id: str) -> list[contract.InboundEvent]:
    from control_plane.kit.redis import get_redis

    entries = await get_redis().xrange(contract.inbound_stream(tenant_id))
    return [contract.InboundEvent.from_fields(fields) for _id, fields in entries]


async def test_update_with_the_right_secret_lands_in_the_tenant_stream(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    from control_plane.kit.redis import get_redis

    account, bot, secret = await connected_bot(client, webhook_mode)
    update = webhook_mode.push_text(TOKEN, 777, "What are your hours?")
    pubsub = get_redis().pubsub()
    await pubsub.subscribe(contract.wake_channel())
    await get_redis().set(contract.idle_key(account.tenant_id), "1")
    try:
        response = await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: secret})
        assert response.status_code == 200
        assert response.content == b""  # never a method call in the body
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                break
    finally:
        await pubsub.aclose()

    (event,) = await inbound(account.tenant_id)
    assert event.kind == "telegram.update"
    assert event.event_id == f"tg:{bot['id']}:{update['update_id']}"
    assert event.bot_id == bot["id"]
    assert event.payload == update
    assert message is not None and message["data"] == account.tenant_id.encode()
    assert await get_redis().exists(contract.idle_key(account.tenant_id)) == 0


async def test_wrong_or_missing_secret_is_403_and_nothing_is_queued(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    account, bot, secret = await connected_bot(client, webhook_mode)
    update = webhook_mode.push_text(TOKEN, 777, "hi")
    # Warm the cache first, so the mismatch path (cache hit, wrong secret) is the one exercised as well.
    assert (
        await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: secret})
    ).status_code == 200

    for headers in ({SECRET_HEADER: secret + "x"}, {SECRET_HEADER: ""}, {}):
        response = await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers=headers)
        assert response.status_code == 403, headers
    assert len(await inbound(account.tenant_id)) == 1


async def test_unknown_bot_is_404(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    _account, _bot, secret = await connected_bot(client, webhook_mode)
    for bot_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = await client.post(
            f"/webhooks/telegram/{bot_id}", json={"update_id": 1}, headers={SECRET_HEADER: secret}
        )
        assert response.status_code == 404


async def test_polling_bot_has_no_webhook(client: httpx.AsyncClient, telegram: FakeTelegramAPI) -> None:
    _account, bot, _secret = await connected_bot(client, telegram)  # auto mode on http://testserver → polling
    response = await client.post(f"/webhooks/telegram/{bot['id']}", json={"update_id": 1}, headers={SECRET_HEADER: "x"})
    assert response.status_code == 404


async def test_malformed_body_is_400(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    account, bot, secret = await connected_bot(client, webhook_mode)
    headers = {SECRET_HEADER: secret, "Content-Type": "application/json"}
    # The last one nests deeper than the JSON decoder recurses (RecursionError, not a ValueError).
    nested = b"[" * 100_000 + b"]" * 100_000
    for body in (b"{not json", b"[1, 2]", b'{"message": {}}', b'{"update_id": "7"}', b"\xff\xfe", nested):
        response = await client.post(f"/webhooks/telegram/{bot['id']}", content=body, headers=headers)
        assert response.status_code == 400, body
    assert await inbound(account.tenant_id) == []


async def test_oversized_body_is_413(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    account, bot, secret = await connected_bot(client, webhook_mode)
    body = json.dumps({"update_id": 1, "padding": "x" * 300_000}).encode()
    response = await client.post(
        f"/webhooks/telegram/{bot['id']}",
        content=body,
        headers={SECRET_HEADER: secret, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert await inbound(account.tenant_id) == []


async def test_duplicate_delivery_is_queued_twice_for_the_runtime_to_dedupe(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    """We dedupe in the runtime, not at ingress: both entries carry the same event id, and the runtime's
    ``contract.dedupe_key`` marker makes the second one a no-op (see bot_runtime/runtime.py)."""
    account, bot, secret = await connected_bot(client, webhook_mode)
    update = webhook_mode.push_text(TOKEN, 777, "hi")
    for _ in range(2):
        response = await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: secret})
        assert response.status_code == 200
    events = await inbound(account.tenant_id)
    assert [e.event_id for e in events] == [f"tg:{bot['id']}:{update['update_id']}"] * 2


async def test_suspended_tenant_still_gets_200_and_the_update_is_kept(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    account, bot, secret = await connected_bot(client, webhook_mode)
    await set_tenant(account.tenant_id, status="suspended")
    update = webhook_mode.push_text(TOKEN, 777, "anyone there?")

    response = await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: secret})

    assert response.status_code == 200
    assert [e.payload for e in await inbound(account.tenant_id)] == [update]


async def test_new_token_secret_is_honoured_at_once(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    """The cached secret hash is dropped on reconnect, and a mismatch re-reads the database anyway."""
    other = make_token(515151)
    account, bot, old_secret = await connected_bot(client, webhook_mode)
    update = webhook_mode.push_text(TOKEN, 777, "hi")
    await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: old_secret})
    webhook_mode.register_bot(other)
    await client.post(f"/api/v1/bots/{bot['id']}/channels/telegram", json={"token": other}, headers=account.headers)
    new_secret = str(webhook_mode.webhook(other)["secret_token"])

    assert new_secret != old_secret
    response = await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: new_secret})
    assert response.status_code == 200
    assert (
        await client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: old_secret})
    ).status_code == 403


async def test_webhook_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not any(path.startswith("/webhooks/") for path in paths)
    assert "/api/v1/bots/{bot_id}/channels/telegram" in paths


async def test_many_concurrent_deliveries_all_arrive(client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI) -> None:
    account, bot, secret = await connected_bot(client, webhook_mode)
    updates = [webhook_mode.push_text(TOKEN, 1000 + i, f"m{i}") for i in range(20)]
    responses = await asyncio.gather(
        *(
            client.post(f"/webhooks/telegram/{bot['id']}", json=update, headers={SECRET_HEADER: secret})
            for update in updates
        )
    )
    assert {r.status_code for r in responses} == {200}
    assert sorted(e.payload["update_id"] for e in await inbound(account.tenant_id)) == [u["update_id"] for u in updates]
