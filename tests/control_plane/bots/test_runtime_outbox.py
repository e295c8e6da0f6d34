"""Config changes reach Redis even when the after-commit publication is lost (the runtime config outbox).

A crash between commit and publication leaves exactly this behind: the change and its outbox row committed, Redis
still on the old document. The tests build that state with plain SQL (no code of ours is replaced) and run the
periodic job the scheduler runs, ``publish_pending_configs``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid

import asyncpg
import httpx
from sqlalchemy import text

from bot_runtime import contract
from bot_runtime.contract import TenantConfig
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.redis import get_redis
from control_plane.runtimes.publish import publish_after_commit, wait_for_background_publishes
from control_plane.runtimes.tasks import publish_pending_configs
from tests.factories import make_account, make_bot


async def _outbox(tenant_id: str) -> list[object]:
    async with get_sessionmaker()() as db:
        rows = await db.execute(
            text("SELECT requested_at FROM runtime_config_outbox WHERE tenant_id = :t"), {"t": uuid.UUID(tenant_id)}
        )
        return list(rows.scalars())


def _outbox_while_the_loop_is_blocked(tenant_id: str) -> int:
    """Count the tenant's requests from another thread while this event loop stays blocked, so the after-commit
    publication (a task on this loop) cannot have run yet."""
    found: list[int] = []

    async def count() -> None:
        connection = await asyncpg.connect(os.environ["DATABASE_URL"].replace("+asyncpg", ""))
        try:
            found.append(
                await connection.fetchval(
                    "SELECT count(*) FROM runtime_config_outbox WHERE tenant_id = $1", uuid.UUID(tenant_id)
                )
            )
        finally:
            await connection.close()

    thread = threading.Thread(target=lambda: asyncio.run(count()))
    thread.start()
    thread.join(timeout=30)
    return found[0]


async def _document(tenant_id: str) -> TenantConfig:
    raw = await get_redis().get(contract.config_key(tenant_id))
    assert raw is not None
    return TenantConfig.from_json(raw)


async def test_a_published_change_leaves_no_request_behind(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await make_bot(client, account, name="Desk")
    await wait_for_background_publishes()
    assert [bot.name for bot in (await _document(account.tenant_id)).bots] == ["Desk"]
    assert await _outbox(account.tenant_id) == []


async def test_a_rolled_back_change_requests_nothing(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await wait_for_background_publishes()
    async with get_sessionmaker()() as db:
        publish_after_commit(db, account.tenant_id)
        await db.execute(text("SELECT 1"))
        await db.rollback()
    await wait_for_background_publishes()
    assert await _outbox(account.tenant_id) == []


async def test_the_request_is_written_in_the_changing_transaction(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    bot = await make_bot(client, account, name="Before")
    await wait_for_background_publishes()
    async with get_sessionmaker()() as db:
        await db.execute(text("UPDATE bots SET name = 'After' WHERE id = :id"), {"id": uuid.UUID(bot["id"])})
        publish_after_commit(db, account.tenant_id)
        await db.commit()
        # Committed with the change, before the background publication has had a chance to run.
        assert _outbox_while_the_loop_is_blocked(account.tenant_id) == 1
    await wait_for_background_publishes()
    assert [b.name for b in (await _document(account.tenant_id)).bots] == ["After"]
    assert await _outbox(account.tenant_id) == []


async def test_savepoints_neither_publish_early_nor_drop_requests(client: httpx.AsyncClient) -> None:
    """A released savepoint is not the commit, and a rolled-back one undoes only its own work (channel pages wrap
    their service calls in ``begin_nested``)."""
    account = await make_account(client)
    bot = await make_bot(client, account, name="Before")
    await wait_for_background_publishes()
    version = (await _document(account.tenant_id)).version
    async with get_sessionmaker()() as db:
        async with db.begin_nested():
            await db.execute(text("UPDATE bots SET name = 'After' WHERE id = :id"), {"id": uuid.UUID(bot["id"])})
            publish_after_commit(db, account.tenant_id)
        await wait_for_background_publishes()
        assert (await _document(account.tenant_id)).version == version  # nothing published before the commit
        try:
            async with db.begin_nested():
                publish_after_commit(db, account.tenant_id)
                raise LookupError
        except LookupError:
            pass
        await db.commit()
    await wait_for_background_publishes()
    assert [b.name for b in (await _document(account.tenant_id)).bots] == ["After"]
    assert await _outbox(account.tenant_id) == []


async def test_a_lost_publication_is_published_by_the_job(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    bot = await make_bot(client, account, name="Old name")
    await wait_for_background_publishes()
    before = await _document(account.tenant_id)
    # What a web process killed right after its commit leaves: the change and its request, nothing in Redis.
    async with get_sessionmaker()() as db, db.begin():
        await db.execute(text("UPDATE bots SET name = 'New name' WHERE id = :id"), {"id": uuid.UUID(bot["id"])})
        await db.execute(
            text(
                "INSERT INTO runtime_config_outbox (tenant_id, requested_at) VALUES (:t, now() - interval '5 minutes')"
            ),
            {"t": uuid.UUID(account.tenant_id)},
        )
    # A fresh request is left to its own after-commit publisher; only stale ones are the job's.
    counts = await publish_pending_configs()
    assert counts["requests"] >= 1 and counts["failed"] == 0
    after = await _document(account.tenant_id)
    assert [b.name for b in after.bots] == ["New name"]
    assert after.version > before.version
    assert await _outbox(account.tenant_id) == []
    # Nothing left to do: a second run republishes nothing, so no runtime reloads for nothing.
    again = await _document(account.tenant_id)
    await publish_pending_configs()
    assert (await _document(account.tenant_id)).version == again.version


async def test_a_fresh_request_waits_for_its_own_publisher(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await make_bot(client, account)
    await wait_for_background_publishes()
    version = (await _document(account.tenant_id)).version
    async with get_sessionmaker()() as db, db.begin():
        await db.execute(
            text("INSERT INTO runtime_config_outbox (tenant_id) VALUES (:t)"), {"t": uuid.UUID(account.tenant_id)}
        )
    await publish_pending_configs()
    assert (await _document(account.tenant_id)).version == version
    assert len(await _outbox(account.tenant_id)) == 1
    await publish_pending_configs(grace_seconds=0)
    assert (await _document(account.tenant_id)).version > version
    assert await _outbox(account.tenant_id) == []


async def test_a_document_lost_from_redis_is_republished(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    await make_bot(client, account, name="Desk")
    await wait_for_background_publishes()
    redis = get_redis()
    await redis.delete(contract.config_key(account.tenant_id))
    await redis.srem(contract.desired_runtimes_key(), account.tenant_id)
    counts = await publish_pending_configs()
    assert counts["missing"] >= 1
    assert [b.name for b in (await _document(account.tenant_id)).bots] == ["Desk"]
    assert await redis.sismember(contract.desired_runtimes_key(), account.tenant_id)


async def test_a_deleted_tenant_leaves_the_desired_set(client: httpx.AsyncClient) -> None:
    redis = get_redis()
    ghost = str(uuid.uuid4())
    await redis.sadd(contract.desired_runtimes_key(), ghost)
    counts = await publish_pending_configs()
    assert counts["removed"] >= 1
    assert not await redis.sismember(contract.desired_runtimes_key(), ghost)
