"""Issue 2 §2: a stored bot token's bytes appear nowhere in the raw database (nor in Redis, for the channel's part).

The database check is a pg_dump-like scan: ``COPY <table> TO STDOUT`` of every table, searched for the token in
every spelling it could take there (raw, its secret half, hex as bytea prints, base64).
"""

from __future__ import annotations

import base64
import io
import os

import asyncpg
import httpx

from tests.factories import make_account, make_bot
from tests.fakes import FakeTelegramAPI, make_token

TOKEN = make_token(424242, "AAF-raw_scan_secret_9876543210abcdefXYZ")


def spellings(token: str) -> list[bytes]:
    secret = token.split(":", 1)[1]
    return [
        token.encode(),
        secret.encode(),
        token.encode().hex().encode(),
        secret.encode().hex().encode(),
        base64.b64encode(token.encode()),
        base64.urlsafe_b64encode(token.encode()),
    ]


async def dump_database() -> bytes:
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        assert {"channel_connections", "audit_log", "bots"} <= {row["table_name"] for row in tables}
        out = io.BytesIO()
        for row in tables:
            out.write(f"-- {row['table_name']}\n".encode())
            await conn.copy_from_table(row["table_name"], output=out, schema_name="public")
        return out.getvalue()
    finally:
        await conn.close()


async def dump_redis() -> bytes:
    from control_plane.kit.redis import get_redis
    from control_plane.settings import get_settings

    redis = get_redis()
    out = io.BytesIO()
    async for key in redis.scan_iter(match=get_settings().redis_key_prefix + "*"):
        out.write(key + b"\n")
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out.write(await redis.get(key) or b"")
        elif kind == "hash":
            out.write(repr(await redis.hgetall(key)).encode())
        elif kind == "stream":
            out.write(repr(await redis.xrange(key)).encode())
        elif kind == "list":
            out.write(repr(await redis.lrange(key, 0, -1)).encode())
        elif kind == "set":
            out.write(repr(await redis.smembers(key)).encode())
    return out.getvalue()


async def test_token_bytes_appear_nowhere_in_the_raw_database(
    client: httpx.AsyncClient, webhook_mode: FakeTelegramAPI
) -> None:
    webhook_mode.register_bot(TOKEN, username="scan_bot")
    account = await make_account(client)
    bot = await make_bot(client, account)
    response = await client.post(
        f"/api/v1/bots/{bot['id']}/channels/telegram", json={"token": TOKEN}, headers=account.headers
    )
    assert response.status_code == 200
    # Also exercise the webhook path, which caches what it needs in Redis.
    secret = str(webhook_mode.webhook(TOKEN)["secret_token"])
    update = webhook_mode.push_text(TOKEN, 777, "hello")
    hook = await client.post(
        f"/webhooks/telegram/{bot['id']}", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
    )
    assert hook.status_code == 200

    database = await dump_database()
    assert b"scan_bot" in database  # the scan does see the connection row
    for needle in spellings(TOKEN):
        assert needle not in database, needle
    assert secret.encode() not in database  # the webhook secret is encrypted too

    from bot_runtime import contract
    from control_plane.runtimes.publish import wait_for_background_publishes

    await wait_for_background_publishes()
    keyspace = await dump_redis()
    # The scan sees the tenant's published config, its inbound stream and the webhook cache.
    assert contract.config_key(account.tenant_id).encode() in keyspace
    assert contract.inbound_stream(account.tenant_id).encode() in keyspace
    for needle in [*spellings(TOKEN), secret.encode()]:
        assert needle not in keyspace, needle


async def test_published_runtime_config_carries_the_token_encrypted_with_the_runtime_key(
    client: httpx.AsyncClient, telegram: FakeTelegramAPI
) -> None:
    from bot_runtime import contract
    from bot_runtime.crypto import decrypt_json
    from control_plane.kit.redis import get_redis
    from control_plane.runtimes.publish import wait_for_background_publishes

    telegram.register_bot(TOKEN, username="scan_bot")
    account = await make_account(client)
    bot = await make_bot(client, account)
    response = await client.post(
        f"/api/v1/bots/{bot['id']}/channels/telegram", json={"token": TOKEN}, headers=account.headers
    )
    assert response.status_code == 200
    await wait_for_background_publishes()  # connecting republishes the tenant's config after the commit

    raw = await get_redis().get(contract.config_key(account.tenant_id))
    assert raw is not None and TOKEN.encode() not in raw
    config = contract.TenantConfig.from_json(raw)
    (channel,) = [c for c in config.bots[0].channels if c.kind == "telegram"]
    assert decrypt_json(channel.credentials) == {"token": TOKEN}  # RUNTIME_SECRET_KEY, as the runtime reads it
    assert channel.settings["mode"] == "polling" and channel.settings["username"] == "scan_bot"

    await client.delete(f"/api/v1/bots/{bot['id']}/channels/telegram", headers=account.headers)
    await wait_for_background_publishes()
    config = contract.TenantConfig.from_json(await get_redis().get(contract.config_key(account.tenant_id)))
    assert [c.kind for c in config.bots[0].channels if c.kind == "telegram"] == []
