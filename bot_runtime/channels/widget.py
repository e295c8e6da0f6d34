"""The website widget inside the tenant runtime: answers ``widget.message`` entries onto the visitor's conversation.

The control plane accepts a visitor's message (origin, rate limit, idempotency), appends it to the visitor's
conversation stream (``contract.widget_conversation_stream``) and XADDs a ``widget.message`` InboundEvent
(payload ``{visitor_id, text, language, reply_to}``, reply_to = the widget's client_message_id) to the tenant's
inbound stream. The runtime core hands the entry to :func:`handle_message`, which counts it toward the plan's
daily limit, answers with the answering engine (the bot's knowledge artifact from Redis; a model provider when the
tenant's config carries a key, the offline answerer otherwise) and XADDs the reply onto the same conversation
stream, where the control plane's SSE endpoint picks it up for whichever web worker holds the visitor's connection.
Every handled message emits ``message.in`` and ``message.out`` RuntimeEvents (channel ``widget``, chat
``{external_id: visitor_id}``).

This module registers itself with the runtime core on import (the core imports it for the ``widget`` channel every
bot's config names, and for ``widget.*`` kinds), imports no SDK until a provider is actually configured, and never
imports the control plane.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bot_runtime import contract
from bot_runtime.answering.tenant import TenantAnswerer, close_shared_answerer, shared_answerer
from bot_runtime.channels import detect_language, message_out_data
from bot_runtime.i18n import N_, normalize_locale, use_locale
from bot_runtime.i18n import gettext as _
from bot_runtime.ratelimit import LIMIT_NOTICE, RATE_NOTICE, check_chat_rate
from bot_runtime.resp import Redis
from bot_runtime.runtime import HandlerContext, Runtime, register_handler, register_shutdown

if TYPE_CHECKING:
    from bot_runtime.answering.schemas import AnswerResult, Turn

log = logging.getLogger("bot_runtime.widget")

CHANNEL = "widget"
MESSAGE_KIND = "widget.message"
# Earlier turns handed to the answering engine, read back from the conversation stream (survives restarts).
HISTORY_TURNS = 6

UNAVAILABLE_NOTICE = N_("This chat is not available right now. Please try again later.")


def order_key(event: contract.InboundEvent) -> str:
    """One visitor's messages are answered in order; different visitors are answered in parallel."""
    return f"{event.bot_id}:{event.payload.get('visitor_id', '')}"


# ---------------------------------------------------------------------------------------------------------------
# The conversation stream


async def append_to_conversation(redis: Redis, key: str, fields: dict[str, str]) -> str:
    """XADD one entry (trimmed, TTL renewed); returns its id, which is also the SSE event id."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(key, fields, maxlen=contract.WIDGET_CONVERSATION_MAXLEN, approximate=True)
        pipe.expire(key, contract.WIDGET_CONVERSATION_TTL)
        entry_id, _ = await pipe.execute()
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_history(
    redis: Redis, key: str, client_message_id: str
) -> tuple[tuple[Turn, ...], dict[str, str] | None]:
    """(earlier turns before the visitor's message ``client_message_id``, the bot entry already answering it).

    The second value is the reply this message already got, which happens when the entry is redelivered after a
    crash between the XADD and the sent marker: the reply is then recorded, not sent again.
    """
    from bot_runtime.answering.schemas import Turn

    raw = await redis.xrevrange(key, count=4 * HISTORY_TURNS)
    entries = [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}) for entry_id, fields in raw]
    entries.reverse()
    answered = next(
        (
            f
            for _id, f in entries
            if client_message_id and f.get("role") == "bot" and f.get("reply_to") == client_message_id
        ),
        None,
    )
    position = next(
        (i for i, (_id, f) in enumerate(entries) if f.get("client_message_id") == client_message_id), len(entries)
    )
    turns = [
        Turn(role="user" if f.get("role") == "visitor" else "assistant", text=f.get("text", ""))
        for _id, f in entries[:position]
        if f.get("role") in ("visitor", "bot") and not f.get("notice") and f.get("text")
    ]
    return tuple(turns[-HISTORY_TURNS:]), answered


# ---------------------------------------------------------------------------------------------------------------
# The handler


def answerer(runtime: Runtime) -> TenantAnswerer:
    return shared_answerer(runtime.s.redis_url)


async def handle_message(ctx: HandlerContext) -> None:
    """Answer one ``widget.message`` entry. Raises (so the core retries) only on transient trouble."""
    event = ctx.event
    payload = event.payload
    visitor_id = str(payload.get("visitor_id") or "")
    text = str(payload.get("text") or "").strip()
    reply_to = str(payload.get("reply_to") or "")
    hint = normalize_locale(str(payload.get("language") or "")) or None
    if not visitor_id or not text:
        log.warning("widget.message.malformed", extra={"event_id": event.event_id})
        return  # a malformed entry does not get better with retries
    bot = ctx.bot
    key = contract.widget_conversation_stream(ctx.tenant_id, event.bot_id, visitor_id)
    chat = {"external_id": visitor_id}
    language = detect_language(text, hint, bot.language if bot else "en")
    chat["language"] = language
    history, already = await read_history(ctx.redis, key, reply_to)
    if already is not None:
        # Redelivered after the reply went out but before the sent marker: record it (the events went missing
        # with the crash; their ids are the same as the first time), don't answer twice.
        await ctx.mark_sent()
        ctx.emit("message.in", channel=CHANNEL, chat=chat, data=_in_data(text, language, reply_to))
        ctx.emit(
            "message.out", channel=CHANNEL, chat=chat, data=_out_data(ctx, already.get("text", ""), language, reply_to)
        )
        return
    if bot is None or not bot.is_enabled:
        # Switched off (or deleted) after the visitor wrote: say so instead of leaving the widget waiting. Notices
        # speak the widget's language (the hint), like the rest of its interface.
        with use_locale(hint or language):
            notice = _(UNAVAILABLE_NOTICE)
        await _reply(ctx, key, notice, reply_to, notice_kind="unavailable")
        if bot is not None:
            ctx.emit("message.in", channel=CHANNEL, chat=chat, data=_in_data(text, language, reply_to, dropped=True))
            ctx.emit("message.out", channel=CHANNEL, chat=chat, data=_out_data(ctx, notice, language, reply_to))
        return
    rate = await check_chat_rate(ctx.redis, ctx.tenant_id, bot.id, CHANNEL, visitor_id, event_id=event.event_id)
    if not rate.allowed:
        data = _in_data(text, language, reply_to)
        data["rate_limited"] = True
        ctx.emit("message.in", channel=CHANNEL, chat=chat, data=data)
        if rate.notice:  # once per window, then nothing until it ends
            with use_locale(hint or language):
                notice = _(RATE_NOTICE, seconds=rate.retry_after)
            await _reply(ctx, key, notice, reply_to, notice_kind="rate")
            ctx.emit("message.out", channel=CHANNEL, chat=chat, data=_out_data(ctx, notice, language, reply_to))
        return
    allowed = await ctx.count_message()
    ctx.emit("message.in", channel=CHANNEL, chat=chat, data=_in_data(text, language, reply_to, over_limit=not allowed))
    if not allowed:
        if await ctx.runtime.should_send_limit_notice(ctx.config, f"w:{bot.id}:{visitor_id}"):
            with use_locale(hint or language):
                notice = _(LIMIT_NOTICE)
            await _reply(ctx, key, notice, reply_to, notice_kind="limit")
            data = _out_data(ctx, notice, language, reply_to)
            data["limit_notice"] = True
            ctx.emit("message.out", channel=CHANNEL, chat=chat, data=data)
        return
    started = time.monotonic()
    result = await answerer(ctx.runtime).answer(ctx.config, bot, text, history=history, language_hint=hint)
    answer_ms = round((time.monotonic() - started) * 1000)
    await _reply(ctx, key, result.text, reply_to)
    data = _out_data(ctx, result.text, result.language or language, reply_to, answer=result)
    if result.blocked:
        data.update(contract.blocked_fields(result.blocked, result.provider, text))
    ctx.emit("message.out", channel=CHANNEL, chat=chat, data=data)
    log.info(
        "widget.answered",
        extra={"tenant_id": ctx.tenant_id, "bot_id": bot.id, "answer_ms": answer_ms, "provider": result.provider},
    )


async def _reply(ctx: HandlerContext, key: str, text: str, reply_to: str, *, notice_kind: str = "") -> str:
    """Lease check, XADD the bot's entry, sent marker (``ctx.deliver``)."""
    fields = {
        "role": "bot",
        "text": text,
        "reply_to": reply_to,
        "event_id": ctx.event.event_id,
        "at": f"{time.time():.3f}",
    }
    if notice_kind:
        fields["notice"] = notice_kind
    return await ctx.deliver(lambda: append_to_conversation(ctx.redis, key, fields))


def _in_data(
    text: str, language: str, reply_to: str, *, over_limit: bool = False, dropped: bool = False
) -> dict[str, Any]:
    data: dict[str, Any] = {"text": text, "message_id": reply_to, "type": "text", "language": language}
    if over_limit:
        data["over_limit"] = True
    if dropped:
        data["dropped"] = True
    return data


def _out_data(
    ctx: HandlerContext, text: str, language: str, reply_to: str, *, answer: AnswerResult | None = None
) -> dict[str, Any]:
    return message_out_data(
        text,
        received_at=ctx.event.received_at,
        delivery="sent",
        parts=1,
        language=language,
        reply_to=reply_to,
        answer=answer,
    )


async def _on_shutdown(runtime: Runtime) -> None:
    await close_shared_answerer()


register_handler(MESSAGE_KIND, handle_message, order_key=order_key)
register_shutdown(_on_shutdown)
