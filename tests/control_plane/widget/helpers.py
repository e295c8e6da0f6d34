"""Helpers for the widget tests: a widget-ready bot, the app served for real (SSE needs a socket), and an SSE reader.

``live_app`` serves the FastAPI app with uvicorn inside the test's own event loop (not a thread), because the
app's Redis client and database pool belong to the loop that first used them, and the tests use them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.factories import Account, make_account, make_bot

SITE = "https://shop.example"
OTHER_SITE = "https://evil.example"


def new_visitor() -> str:
    return secrets.token_urlsafe(16)


def new_message_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass
class WidgetBot:
    account: Account
    bot: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.bot["id"])

    @property
    def public_id(self) -> str:
        return str(self.bot["public_id"])

    @property
    def tenant_id(self) -> str:
        return self.account.tenant_id

    @property
    def api(self) -> str:
        return f"/api/v1/widget/{self.public_id}"


async def make_widget_bot(client: httpx.AsyncClient, *, origins: list[str] | None = None, **fields: Any) -> WidgetBot:
    account = await make_account(client)
    bot = await make_bot(client, account, allowed_origins=[SITE] if origins is None else origins, **fields)
    return WidgetBot(account, bot)


async def send(
    client: httpx.AsyncClient,
    wb: WidgetBot,
    text: str = "Do you deliver?",
    *,
    visitor: str,
    message_id: str | None = None,
    origin: str | None = SITE,
    **headers: str,
) -> httpx.Response:
    body = {"visitor_id": visitor, "text": text, "client_message_id": message_id or new_message_id()}
    sent_headers = {**headers}
    if origin is not None:
        sent_headers["Origin"] = origin
    return await client.post(f"{wb.api}/messages", json=body, headers=sent_headers)


async def publish_config(tenant_id: str, *, artifact_versions: dict[str, int] | None = None) -> None:
    """Publish the tenant's runtime config document from the database (what the control plane does on changes)."""
    from control_plane.kit.db import get_sessionmaker
    from control_plane.runtimes.publish import publish_tenant_config, wait_for_background_publishes

    # The bot's creation published after its commit; that publication must not land after this one, since it
    # knows no artifact versions (the tests store artifacts in Redis only).
    await wait_for_background_publishes()
    async with get_sessionmaker()() as db:
        await publish_tenant_config(db, uuid.UUID(tenant_id), artifact_versions=artifact_versions)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def live_app(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 in this event loop; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


@dataclass
class SseEvent:
    id: str | None = None
    event: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)


async def read_sse(
    response: httpx.Response, *, count: int, within: float = 10.0, comments: bool = False
) -> list[SseEvent]:
    """Read ``count`` events (or, with ``comments``, events and comment lines) from an open SSE response."""
    found: list[SseEvent] = []
    current = SseEvent()

    async def collect() -> None:
        nonlocal current
        async for line in response.aiter_lines():
            if line == "":
                if current.data or current.id or current.event:
                    found.append(current)
                    if len(found) >= count:
                        return
                current = SseEvent()
            elif line.startswith(":"):
                if comments:
                    found.append(SseEvent(comments=[line[1:].strip()]))
                    if len(found) >= count:
                        return
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    current.id = value
                elif name == "event":
                    current.event = value
                elif name == "data":
                    current.data += value

    await asyncio.wait_for(collect(), within)
    return found
