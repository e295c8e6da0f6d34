"""An admin suspension stops a tenant's runtime (it leaves the desired set) and resuming starts it again."""

from __future__ import annotations

import httpx

from bot_runtime import contract
from bot_runtime.contract import TenantConfig
from control_plane.kit.redis import get_redis
from control_plane.runtimes.publish import wait_for_background_publishes
from tests.admin_console.test_admin import ADMIN_PASSWORD, admin_headers
from tests.control_plane.accounts.helpers import csrf_from
from tests.factories import make_account, make_bot


async def _desired(tenant_id: str) -> bool:
    return bool(await get_redis().sismember(contract.desired_runtimes_key(), tenant_id))


async def test_suspend_and_resume_through_the_api(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    await make_bot(client, owner)
    await wait_for_background_publishes()
    assert await _desired(owner.tenant_id)
    headers = await admin_headers(client)

    suspended = await client.post(f"/api/v1/admin/tenants/{owner.tenant_id}/suspend", headers=headers)
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    await wait_for_background_publishes()
    assert not await _desired(owner.tenant_id)
    config = TenantConfig.from_json(await get_redis().get(contract.config_key(owner.tenant_id)))
    assert config.status == "suspended"
    blocked = await client.post("/api/v1/bots", json={"name": "More", "language": "en"}, headers=owner.headers)
    assert blocked.status_code in (402, 403)

    resumed = await client.post(f"/api/v1/admin/tenants/{owner.tenant_id}/resume", headers=headers)
    assert resumed.json()["status"] == "active"
    await wait_for_background_publishes()
    assert await _desired(owner.tenant_id)


async def test_only_platform_admins_may_suspend(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    other = await make_account(client)
    denied = await client.post(f"/api/v1/admin/tenants/{owner.tenant_id}/suspend", headers=other.headers)
    assert denied.status_code == 403
    missing = await client.post(
        "/api/v1/admin/tenants/00000000-0000-0000-0000-000000000000/suspend", headers=await admin_headers(client)
    )
    assert missing.status_code == 404


async def test_suspend_button_on_the_tenants_page(client: httpx.AsyncClient) -> None:
    owner = await make_account(client)
    token = await csrf_from(client, "/en/admin/login")
    signed_in = await client.post("/en/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD})
    assert signed_in.status_code == 303
    page = await client.get("/ru/admin/tenants")
    assert page.status_code == 200
    action = f"/ru/admin/tenants/{owner.tenant_id}/suspend"
    assert action in page.text
    # Plan and status read in the page's language, not as codes.
    assert "<td>Пробный период</td>" in page.text
    assert "<td>Активен</td>" in page.text
    no_csrf = await client.post(action, data={})
    assert no_csrf.status_code == 403
    sent = await client.post(action, data={"csrf_token": await csrf_from(client, "/ru/admin/tenants")})
    assert sent.status_code == 303
    me = await client.get("/api/v1/admin/tenants", headers=await admin_headers(client))
    statuses = {item["id"]: item["status"] for item in me.json()["items"]}
    assert statuses[owner.tenant_id] == "suspended"
