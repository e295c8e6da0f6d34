"""The runtimes console against a real host agent (its own supervisord, real Redis): the admin API lists a running
runtime, restarts, stops and starts it and tails its log; non-admins get 403 everywhere; the pages render in every
language, and their command forms need the CSRF token.

Host agents run as ``botfactory runtime-host`` subprocesses with the short timings of tests/bot_runtime (their
``procs`` fixture stops them, their supervisords and any runtime they left, even when a test fails).
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import select

from bot_runtime import contract
from bot_runtime.i18n import translations_for
from tests.admin_console.test_admin import ADMIN_PASSWORD, admin_headers
from tests.bot_runtime import conftest as host_fixtures
from tests.bot_runtime.conftest import Processes, pid_alive, publish, wait_for
from tests.control_plane.accounts.helpers import csrf_from
from tests.control_plane.bots.helpers import sign_in_browser
from tests.factories import Account, make_account

API = "/api/v1/admin/runtimes"

# The host tests' own fixtures, reused as they are: ``redis`` (a decoded client) and ``procs`` (starts host agents
# and stops them, their supervisords and their runtimes even when a test fails).
redis = host_fixtures.redis
procs = host_fixtures.procs


async def _runtime(client: httpx.AsyncClient, headers: dict[str, str], tenant_id: str) -> dict[str, Any] | None:
    response = await client.get(API, headers=headers)
    assert response.status_code == 200, response.text
    return next((item for item in response.json()["items"] if item["tenant_id"] == tenant_id), None)


def _in_state(client: httpx.AsyncClient, headers: dict[str, str], tenant_id: str, state: str, **extra: Any) -> Any:
    async def check() -> dict[str, Any] | None:
        item = await _runtime(client, headers, tenant_id)
        if item is None or item["state"] != state:
            return None
        return item if all(item[key] == value for key, value in extra.items()) else None

    return check


async def _running_tenant(client: httpx.AsyncClient, redis: Redis, procs: Processes, host: str) -> Account:
    """A real tenant (so it has a name) whose config is published, run by a fresh host agent."""
    owner = await make_account(client)
    procs.tenants.add(owner.tenant_id)
    await publish(redis, owner.tenant_id)
    procs.start_host(host)
    return owner


async def test_admin_api_controls_a_real_runtime(client: httpx.AsyncClient, redis: Redis, procs: Processes) -> None:
    owner = await _running_tenant(client, redis, procs, "adm1")
    tenant = owner.tenant_id
    headers = await admin_headers(client)

    async def running_with_memory() -> dict[str, Any] | None:
        item = await _runtime(client, headers, tenant)
        return item if item and item["state"] == "running" and item["rss_bytes"] > 0 else None

    item = await wait_for(running_with_memory, within=15, interval=0.2, what="the runtime listed as running")
    assert item["tenant_name"] == owner.me["tenants"][0]["name"]
    assert (item["host"], item["leased_by"], item["restarts"]) == ("adm1", "adm1", 0)
    assert item["desired"] and not item["held"] and not item["stale"] and item["uptime_seconds"] >= 0
    first_pid = item["pid"]
    assert first_pid and pid_alive(first_pid)

    hosts = (await client.get("/api/v1/admin/hosts", headers=headers)).json()
    assert [host["host_id"] for host in hosts["items"]] == ["adm1"]
    assert hosts["items"][0]["runtimes"] == 1 and hosts["items"][0]["states"] == {"running": 1}
    assert hosts["items"][0]["heartbeat_age_seconds"] < 5
    one = await client.get(f"{API}/{tenant}", headers=headers)
    assert one.status_code == 200 and one.json()["pid"] == first_pid

    logs = await client.get(f"{API}/{tenant}/logs", params={"lines": 50}, headers=headers)
    assert logs.status_code == 200, logs.text
    assert logs.json()["host"] == "adm1" and logs.json()["stream"] == "stderr"
    assert any('"event": "runtime.ready"' in line for line in logs.json()["lines"])

    restart = await client.post(f"{API}/{tenant}/restart", headers=headers)
    assert restart.status_code == 202, restart.text
    assert restart.json()["ok"] and restart.json()["message"] and "adm1" in restart.json()["detail"]

    async def restarted() -> dict[str, Any] | None:
        item = await _runtime(client, headers, tenant)
        ok = item and item["state"] == "running" and item["restarts"] >= 1 and item["pid"] not in (None, first_pid)
        return item if ok else None

    item = await wait_for(restarted, within=15, interval=0.2, what="the restarted runtime")
    assert not pid_alive(first_pid)

    stop = await client.post(f"{API}/{tenant}/stop", headers=headers)
    assert stop.status_code == 202 and stop.json()["ok"], stop.text
    await wait_for(_in_state(client, headers, tenant, "stopped", held=True), within=10, interval=0.2, what="stopped")
    assert not pid_alive(item["pid"])

    start = await client.post(f"{API}/{tenant}/start", headers=headers)
    assert start.status_code == 202 and start.json()["ok"], start.text
    await wait_for(_in_state(client, headers, tenant, "running", held=False), within=15, interval=0.2, what="running")

    running = await client.get(API, params={"state": "running"}, headers=headers)
    assert [item["tenant_id"] for item in running.json()["items"]] == [tenant]
    assert (await client.get(API, params={"state": "idle"}, headers=headers)).json()["total"] == 0
    assert (await client.get(API, params={"state": "bogus"}, headers=headers)).status_code == 422

    from control_plane.kit.db import get_sessionmaker
    from control_plane.models import AuditLog

    async with get_sessionmaker()() as db:
        actions = await db.scalars(
            select(AuditLog.action).where(AuditLog.target_id == tenant).order_by(AuditLog.created_at)
        )
        assert list(actions) == ["runtime.restart", "runtime.stop", "runtime.start"]

    # A runtime whose last host is gone: the log request goes unanswered, which is a translated 504.
    ghost = "tghost" + str(int(time.time()))
    await redis.hset(contract.runtime_stats_key(ghost), mapping={"state": "stopped", "host": "gone-host"})
    await redis.sadd(contract.runtimes_known_key(), ghost)
    timeout = await client.get(f"{API}/{ghost}/logs", headers=headers)
    assert timeout.status_code == 504
    assert timeout.json()["error"]["code"] == "host_timeout"
    unknown = await client.post(f"{API}/nobody/restart", headers=headers)
    assert unknown.status_code == 404
    assert not await redis.exists(contract.hold_key("nobody"))


async def test_non_admins_get_403(client: httpx.AsyncClient, redis: Redis) -> None:
    owner = await make_account(client)
    tenant = owner.tenant_id
    # A runtime the console knows of, so a 403 cannot be a 404 in disguise.
    await redis.hset(contract.runtime_stats_key(tenant), mapping={"state": "running", "host": "h1", "pid": "1"})
    await redis.sadd(contract.runtimes_known_key(), tenant)
    calls = [
        ("GET", API),
        ("GET", f"{API}/{tenant}"),
        ("POST", f"{API}/{tenant}/start"),
        ("POST", f"{API}/{tenant}/stop"),
        ("POST", f"{API}/{tenant}/restart"),
        ("GET", f"{API}/{tenant}/logs"),
        ("GET", "/api/v1/admin/hosts"),
    ]
    browser = await sign_in_browser(owner)
    for method, url in calls:
        assert (await client.request(method, url, headers=owner.headers)).status_code == 403, url
        cookie = browser.headers(unsafe=method == "POST")
        assert (await client.request(method, url, headers=cookie)).status_code == 403, url
        assert (await client.request(method, url)).status_code == 401, url
    assert not await redis.exists(contract.hold_key(tenant))  # the refused stop changed nothing

    page = await client.get("/en/admin/runtimes", headers=browser.headers())
    assert (page.status_code, page.headers["location"]) == (303, "/en/admin/login")
    form = {"csrf_token": browser.csrf_token, "next": "/en/admin/runtimes"}
    refused = await client.post(f"/en/admin/runtimes/{tenant}/restart", data=form, headers=browser.headers())
    assert refused.status_code == 403


async def test_pages_render_in_every_language_and_forms_restart(
    client: httpx.AsyncClient, redis: Redis, procs: Processes
) -> None:
    owner = await _running_tenant(client, redis, procs, "adm2")
    tenant = owner.tenant_id

    async def ready_pid() -> int:
        ready = await redis.hgetall(contract.ready_key(tenant))
        stats = await redis.hgetall(contract.runtime_stats_key(tenant))
        running = ready and stats.get("state") == "running" and pid_alive(int(ready["pid"]))
        return int(ready["pid"]) if running else 0

    pid = await wait_for(ready_pid, within=15, interval=0.2, what="the runtime to run")

    token = await csrf_from(client, "/en/admin/login")
    signed_in = await client.post("/en/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD})
    assert signed_in.status_code == 303

    for lang in ("en", "ru", "uz"):
        title = translations_for(lang).gettext("Runtimes")
        page = await client.get(f"/{lang}/admin/runtimes")
        assert page.status_code == 200, page.text
        assert f'<html lang="{lang}">' in page.text
        assert f"<title>{title} · BotFactory</title>" in page.text
        assert f'data-runtime="{tenant}"' in page.text and "adm2" in page.text
        assert f'href="/{lang}/admin/runtimes" aria-current="page"' in page.text  # the admin nav
        detail = await client.get(f"/{lang}/admin/runtimes/{tenant}")
        assert detail.status_code == 200, detail.text
        assert "runtime.ready" in detail.text  # the log tail, from the host
    assert f'data-runtime="{tenant}"' not in (await client.get("/en/admin/runtimes?state=stopped")).text
    assert (await client.get("/en/admin/runtimes/nobody", headers={"Accept": "text/html"})).status_code == 404

    # The page's refresh script reads the JSON API with the admin cookie; an unsafe call also needs CSRF.
    assert (await client.get(API)).status_code == 200
    assert (await client.post(f"{API}/{tenant}/restart")).status_code == 403

    action = f"/en/admin/runtimes/{tenant}/restart"
    assert (await client.post(action, data={"next": "/en/admin/runtimes"})).status_code == 403
    assert await ready_pid() == pid
    sent = await client.post(action, data={"csrf_token": token, "next": "/en/admin/runtimes"})
    assert (sent.status_code, sent.headers["location"]) == (303, "/en/admin/runtimes")
    back = await client.get(sent.headers["location"])
    assert 'class="alert alert-success"' in back.text and "The runtime is restarting." in back.text
    assert "alert-success" not in (await client.get("/en/admin/runtimes")).text  # shown once

    async def new_pid() -> int:
        current = await ready_pid()
        return current if current and current != pid else 0

    await wait_for(new_pid, within=15, interval=0.2, what="a new runtime process after the form")
    # Somewhere else to go back to is ignored: the form returns to the runtime's page.
    elsewhere = await client.post(action, data={"csrf_token": token, "next": "https://evil.example/"})
    assert elsewhere.headers["location"] == f"/en/admin/runtimes/{tenant}"
    assert re.search(r"alert-(success|error)", (await client.get(elsewhere.headers["location"])).text)
