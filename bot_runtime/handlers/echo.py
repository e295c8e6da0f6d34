"""Diagnostics handler for kind ``test.echo``: answers by appending to the tenant's outbox stream.

It exercises the whole inbound path (dedupe, lease check, sent marker, events, ack) without any external API, so
operators can check a runtime end to end (XADD a ``test.echo`` entry, read ``contract.outbox_stream``) and the
tests can count replies exactly. Payload: ``{"text": str, "delay": seconds (max 10), "fail": bool}``.
"""

from __future__ import annotations

import asyncio
import os

from bot_runtime import contract
from bot_runtime.runtime import HandlerContext, register_handler


async def handle_echo(ctx: HandlerContext) -> None:
    payload = ctx.event.payload
    delay = min(float(payload.get("delay") or 0), 10.0)
    if delay > 0:
        await asyncio.sleep(delay)
    if payload.get("fail"):
        raise RuntimeError("test.echo asked to fail")
    text = str(payload.get("text", ""))
    reply = {
        "event_id": ctx.event.event_id,
        "text": text,
        "pid": str(os.getpid()),
        "redelivered": "1" if ctx.redelivered else "0",
    }
    outbox = contract.outbox_stream(ctx.tenant_id)
    await ctx.deliver(lambda: ctx.redis.xadd(outbox, reply, maxlen=10_000, approximate=True))
    chat = {"external_id": str(payload.get("chat", "diagnostics"))}
    ctx.emit("message.in", channel="test", chat=chat, data={"text": text})
    ctx.emit("message.out", channel="test", chat=chat, data={"text": text, "delivery": "sent"})


register_handler("test.echo", handle_echo)
