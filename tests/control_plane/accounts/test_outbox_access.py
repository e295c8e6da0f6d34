"""The development outbox holds reset links: only a browser on this machine (or a platform admin) may read it."""

from __future__ import annotations

import httpx


async def test_outbox_answers_loopback_browser(client: httpx.AsyncClient) -> None:
    response = await client.get("/en/dev/outbox")
    assert response.status_code == 200


async def test_outbox_is_hidden_from_remote_clients(app) -> None:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as remote:
        response = await remote.get("/en/dev/outbox", headers={"Accept": "text/html"})
    assert response.status_code == 404
