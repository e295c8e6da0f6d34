"""The plan's bot limit (billing.limits, the one place limits are checked) and suspended workspaces."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.control_plane.bots.helpers import set_tenant
from tests.factories import make_account, make_bot


async def test_free_plan_allows_one_bot(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    await make_bot(client, owner)
    second = await client.post("/api/v1/bots", json={"name": "Second"}, headers=owner.headers)
    assert second.status_code == 402
    error = second.json()["error"]
    assert error["code"] == "plan_limit"
    assert "(1)" in error["message"]
    total = (await client.get("/api/v1/bots", headers=owner.headers)).json()["total"]
    assert total == 1


async def test_deleting_frees_the_slot_and_upgrading_lifts_the_limit(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    first = await make_bot(client, owner)
    await client.delete(f"/api/v1/bots/{first['id']}", headers=owner.headers)
    await make_bot(client, owner, name="Replacement")
    await set_tenant(owner.tenant_id, plan="business")
    await make_bot(client, owner, name="Third")
    await set_tenant(owner.tenant_id, plan="enterprise")
    await make_bot(client, owner, name="Fourth")


async def test_suspended_workspace_cannot_create_bots(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    await set_tenant(owner.tenant_id, status="suspended", plan="business")
    response = await client.post("/api/v1/bots", json={"name": "Nope"}, headers=owner.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"


async def test_concurrent_creations_cannot_overshoot_the_limit(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    responses = await asyncio.gather(
        *(client.post("/api/v1/bots", json={"name": f"Race {n}"}, headers=owner.headers) for n in range(4))
    )
    assert sorted(response.status_code for response in responses) == [201, 402, 402, 402]


async def test_limits_module_directly(client: httpx.AsyncClient) -> None:
    from billing.limits import PlanLimitReached, bot_quota, ensure_can_create_bot
    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import Tenant

    owner = await make_account(client)
    async with get_sessionmaker()() as db:
        tenant = await db.get(Tenant, uuid.UUID(owner.tenant_id))
        assert tenant is not None
        quota = await bot_quota(db, tenant)
        assert (quota.used, quota.limit, quota.reached) == (0, 1, False)
        await ensure_can_create_bot(db, tenant)
    await make_bot(client, owner)
    async with get_sessionmaker()() as db:
        tenant = await db.get(Tenant, uuid.UUID(owner.tenant_id))
        assert tenant is not None
        assert (await bot_quota(db, tenant)).reached
        try:
            await ensure_can_create_bot(db, tenant)
        except PlanLimitReached as exc:
            assert exc.status_code == 402 and exc.code == "plan_limit"
        else:
            raise AssertionError("the second bot on the free plan was allowed")
