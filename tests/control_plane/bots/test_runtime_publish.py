"""Bot changes reach the runtimes: the tenant's config is published after commit and its runtime is wanted."""

from __future__ import annotations

from pathlib import Path

import httpx

from bot_runtime import contract
from bot_runtime.contract import TenantConfig
from control_plane.kit.redis import get_redis
from control_plane.runtimes.publish import wait_for_background_publishes
from tests.factories import make_account, make_bot

ROOT = Path(__file__).resolve().parents[3]


async def test_first_bot_starts_runtime_and_disabling_stops_it(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    redis = get_redis()
    bot = await make_bot(client, account, name="Desk")
    await wait_for_background_publishes()
    raw = await redis.get(contract.config_key(account.tenant_id))
    assert raw is not None
    config = TenantConfig.from_json(raw)
    assert [b.name for b in config.bots] == ["Desk"]
    assert await redis.sismember(contract.desired_runtimes_key(), account.tenant_id)

    response = await client.post(f"/api/v1/bots/{bot['id']}/disable", headers=account.headers)
    assert response.status_code == 200
    await wait_for_background_publishes()
    newer = TenantConfig.from_json(await redis.get(contract.config_key(account.tenant_id)))
    assert newer.version > config.version
    assert not await redis.sismember(contract.desired_runtimes_key(), account.tenant_id)


async def test_rejected_change_publishes_nothing(client: httpx.AsyncClient) -> None:
    account = await make_account(client)
    bad = await client.post("/api/v1/bots", json={"name": "", "language": "en"}, headers=account.headers)
    assert bad.status_code == 422
    await wait_for_background_publishes()
    assert await get_redis().get(contract.config_key(account.tenant_id)) is None


async def test_deleting_a_bot_purges_its_artifacts(client: httpx.AsyncClient) -> None:
    import asyncio
    import subprocess
    import sys

    account = await make_account(client)
    bot = await make_bot(client, account)
    redis = get_redis()
    await redis.set(contract.artifact_key(bot["id"], 1), b"artifact-bytes")
    response = await client.delete(f"/api/v1/bots/{bot['id']}", headers=account.headers)
    assert response.status_code == 204
    worker = [sys.executable, "-m", "control_plane.cli", "worker", "--burst", "--queues", "ingestion"]
    await asyncio.to_thread(subprocess.run, worker, cwd=ROOT, check=True, timeout=60)
    assert await redis.get(contract.artifact_key(bot["id"], 1)) is None
