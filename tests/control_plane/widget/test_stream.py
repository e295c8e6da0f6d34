"""The widget's Server-Sent Events: replies written to the visitor's stream reach the browser, resume with
Last-Event-ID, keep alive with heartbeats, and work when the message and the stream go through different processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bot_runtime import contract
from control_plane.widget import endpoints
from tests.control_plane.widget.helpers import (
    OTHER_SITE,
    SITE,
    WidgetBot,
    free_port,
    live_app,
    make_widget_bot,
    new_message_id,
    new_visitor,
    read_sse,
    send,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def redis() -> Redis:
    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client  # type: ignore[misc]
    await client.aclose()


async def bot_reply(redis: Redis, wb: WidgetBot, visitor: str, text: str, reply_to: str = "") -> str:
    """What the runtime does with an answer (bot_runtime/channels/widget.py)."""
    key = contract.widget_conversation_stream(wb.tenant_id, wb.id, visitor)
    return await redis.xadd(key, {"role": "bot", "text": text, "reply_to": reply_to, "at": f"{time.time():.3f}"})


async def test_a_reply_reaches_the_open_stream(app, client: httpx.AsyncClient, redis: Redis) -> None:  # type: ignore[no-untyped-def]
    wb = await make_widget_bot(client)
    visitor, message_id = new_visitor(), new_message_id()
    async with live_app(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        url = f"{wb.api}/stream"
        async with http.stream("GET", url, params={"visitor_id": visitor}, headers={"Origin": SITE}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["access-control-allow-origin"] == SITE
            assert response.headers["cache-control"] == "no-cache"
            sent = await send(client, wb, "Do you deliver?", visitor=visitor, message_id=message_id)
            assert sent.status_code == 202
            reply_id = await bot_reply(redis, wb, visitor, "Yes, to every city.", message_id)
            events = await read_sse(response, count=2)
        visitor_event, bot_event = events
        assert visitor_event.id == sent.json()["message_id"] and visitor_event.event == "message"
        assert json.loads(visitor_event.data)["text"] == "Do you deliver?"
        assert bot_event.id == reply_id
        payload = json.loads(bot_event.data)
        assert payload == {
            "id": reply_id,
            "role": "bot",
            "text": "Yes, to every city.",
            "at": payload["at"],
            "client_message_id": None,
            "reply_to": message_id,
            "notice": None,
        }
        refused = await http.get(url, params={"visitor_id": visitor}, headers={"Origin": OTHER_SITE})
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


async def test_the_stream_resumes_after_the_last_event_id(app, client: httpx.AsyncClient, redis: Redis) -> None:  # type: ignore[no-untyped-def]
    wb = await make_widget_bot(client)
    visitor = new_visitor()
    first = await bot_reply(redis, wb, visitor, "one")
    second = await bot_reply(redis, wb, visitor, "two")
    async with live_app(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        url, params = f"{wb.api}/stream", {"visitor_id": visitor}
        async with http.stream("GET", url, params=params, headers={"Origin": SITE}) as response:
            assert [e.id for e in await read_sse(response, count=2)] == [first, second]
        third = await bot_reply(redis, wb, visitor, "three")
        # A reconnecting EventSource sends the last id it saw; the original ?after= is then ignored.
        headers = {"Origin": SITE, "Last-Event-ID": first}
        async with http.stream("GET", url, params={**params, "after": third}, headers=headers) as response:
            assert [e.id for e in await read_sse(response, count=2)] == [second, third]
        # A first connection after loading the history starts after its last id.
        async with http.stream("GET", url, params={**params, "after": second}, headers={"Origin": SITE}) as response:
            assert [e.id for e in await read_sse(response, count=1)] == [third]


async def test_heartbeats_keep_the_connection_and_it_ends_to_rebalance(
    app, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(endpoints, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(endpoints, "STREAM_MAX_SECONDS", 1.0)
    wb = await make_widget_bot(client)
    async with live_app(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        params = {"visitor_id": new_visitor()}
        started = time.monotonic()
        async with http.stream("GET", f"{wb.api}/stream", params=params, headers={"Origin": SITE}) as response:
            lines = [line async for line in response.aiter_lines()]
        assert time.monotonic() - started < 5
    assert lines[0] == f"retry: {endpoints.RETRY_MS}"
    assert lines.count(": heartbeat") >= 3


async def test_many_streams_share_one_reader(app, client: httpx.AsyncClient, redis: Redis) -> None:  # type: ignore[no-untyped-def]
    from control_plane.widget.replies import reply_hub

    wb = await make_widget_bot(client)
    visitors = [new_visitor() for _ in range(12)]
    async with live_app(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:

        async def listen(visitor: str) -> list[str]:
            params = {"visitor_id": visitor}
            async with http.stream("GET", f"{wb.api}/stream", params=params, headers={"Origin": SITE}) as response:
                return [e.data for e in await read_sse(response, count=1)]

        tasks = [asyncio.create_task(listen(v)) for v in visitors]
        for _ in range(100):
            if reply_hub().watching == len(visitors):
                break
            await asyncio.sleep(0.05)
        assert reply_hub().watching == len(visitors)
        for visitor in visitors:
            await bot_reply(redis, wb, visitor, f"for {visitor}")
        results = await asyncio.gather(*tasks)
    assert [f"for {v}" in r[0] for v, r in zip(visitors, results, strict=True)] == [True] * len(visitors)
    for _ in range(100):
        if reply_hub().watching == 0:
            break
        await asyncio.sleep(0.05)
    assert reply_hub().watching == 0


def start_workers(port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """The app under uvicorn with two worker processes, as production runs it."""
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"widget-workers-{port}.log"
    with open(log_path, "wb") as log:
        workers = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "control_plane.app:app", "--host", "127.0.0.1", "--port", str(port)]
            + ["--workers", "2", "--lifespan", "off", "--log-level", "warning"],
            cwd=ROOT,
            env={**os.environ},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return workers, log_path


async def test_message_and_stream_through_different_worker_processes(client: httpx.AsyncClient, redis: Redis) -> None:
    """Redis is the only state: the message is accepted in this process, the stream served by another one (a
    2-worker uvicorn), and the answer written by a third party (the runtime) reaches it."""
    wb = await make_widget_bot(client)
    port = free_port()
    workers, log_path = start_workers(port)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert workers.poll() is None, log_path.read_text()[-3000:]
                await asyncio.sleep(0.1)
            visitor, message_id = new_visitor(), new_message_id()
            params = {"visitor_id": visitor}
            async with http.stream("GET", f"{wb.api}/stream", params=params, headers={"Origin": SITE}) as response:
                assert response.status_code == 200
                accepted = await send(client, wb, "Hello from another worker", visitor=visitor, message_id=message_id)
                assert accepted.status_code == 202
                # And a second message through the worker pool itself.
                other = await http.post(
                    f"{wb.api}/messages",
                    json={"visitor_id": visitor, "text": "And again", "client_message_id": new_message_id()},
                    headers={"Origin": SITE},
                )
                assert other.status_code == 202, other.text
                reply_id = await bot_reply(redis, wb, visitor, "Hello!", message_id)
                events = await read_sse(response, count=3)
        assert [e.id for e in events] == [accepted.json()["message_id"], other.json()["message_id"], reply_id]
    finally:
        workers.terminate()
        try:
            workers.wait(10)
        except subprocess.TimeoutExpired:
            workers.kill()
            workers.wait(5)
