"""The widget channel inside the runtime, with real Redis: a ``widget.message`` entry is answered from the bot's
knowledge artifact onto the visitor's conversation stream, with message.in / message.out events; daily limits,
switched-off bots, redeliveries and a model provider from the tenant config; and the real runtime core end to end."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot_runtime import contract, runtime
from bot_runtime.answering import KnowledgeIndex, chunk_faq
from bot_runtime.channels import widget
from bot_runtime.crypto import encrypt_json
from bot_runtime.i18n import translations_for
from bot_runtime.runtime import HandlerContext, Runtime, RuntimeSettings
from tests.fakes import FakeOpenAI, Reply

FAQ = [
    ("Do you deliver to Samarkand?", "Yes, we deliver to Samarkand in two days."),
    ("What are your opening hours?", "We are open every day from 9:00 to 21:00."),
]


def tenant_config(tenant_id: str, bot_id: str, **options: object) -> contract.TenantConfig:
    bot = contract.BotConfig(
        id=bot_id,
        public_id="b_widget",
        name="Shop",
        language="en",
        artifact_version=int(options.get("artifact_version", 1)),  # type: ignore[arg-type]
        is_enabled=bool(options.get("is_enabled", True)),
        ai_provider=str(options.get("ai_provider", "auto")),
        channels=[contract.ChannelConfig(kind="widget", settings={"allowed_origins": ["https://shop.example"]})],
    )
    return contract.TenantConfig(
        tenant_id=tenant_id,
        version=1,
        plan=contract.PlanLimits(messages_per_day=options.get("messages_per_day", 100)),  # type: ignore[arg-type]
        bots=[bot],
        providers=options.get("providers", {}),  # type: ignore[arg-type]
    )


async def store_artifact(redis_url: str, bot_id: str, version: int = 1) -> None:
    index = KnowledgeIndex.build(chunk_faq(FAQ, source_id="faq", language="en"))
    binary = Redis.from_url(redis_url)
    try:
        await binary.set(contract.artifact_key(bot_id, version), index.to_bytes())
    finally:
        await binary.aclose()


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
    subject = Runtime(RuntimeSettings(tenant_id=tenant_id, redis_url=os.environ["REDIS_URL"]))
    subject.config = tenant_config(tenant_id, bot_id)
    subject.activate()
    await store_artifact(os.environ["REDIS_URL"], bot_id)
    yield subject
    await widget._on_shutdown(subject)
    await subject.redis.aclose()


def bot_id_of(rt: Runtime) -> str:
    assert rt.config is not None
    return rt.config.bots[0].id


def message_event(rt: Runtime, visitor: str, text: str, *, reply_to: str | None = None, language: str = "en"):  # type: ignore[no-untyped-def]
    reply_to = reply_to or secrets.token_urlsafe(12)
    return contract.InboundEvent(
        event_id=f"w:{bot_id_of(rt)}:{reply_to}",
        bot_id=bot_id_of(rt),
        kind=widget.MESSAGE_KIND,
        payload={"visitor_id": visitor, "text": text, "language": language, "reply_to": reply_to},
        received_at=time.time(),
    )


async def visitor_writes(rt: Runtime, event: contract.InboundEvent) -> None:
    """The visitor's own entry, as the control plane appends it when it accepts the message."""
    key = contract.widget_conversation_stream(rt.tenant_id, event.bot_id, event.payload["visitor_id"])
    fields = {"role": "visitor", "text": event.payload["text"], "client_message_id": event.payload["reply_to"]}
    await widget.append_to_conversation(rt.redis, key, {**fields, "at": f"{time.time():.3f}"})


async def handle(rt: Runtime, event: contract.InboundEvent, *, redelivered: bool = False) -> HandlerContext:
    ctx = HandlerContext(rt, event, entry_id=f"{int(time.time() * 1000)}-0", redelivered=redelivered)
    await widget.handle_message(ctx)
    return ctx


async def conversation(rt: Runtime, visitor: str) -> list[dict[str, str]]:
    key = contract.widget_conversation_stream(rt.tenant_id, bot_id_of(rt), visitor)
    return [fields for _id, fields in await rt.redis.xrange(key)]


async def test_a_message_is_answered_from_the_knowledge_base(rt: Runtime) -> None:
    visitor = secrets.token_urlsafe(16)
    event = message_event(rt, visitor, "Do you deliver to Samarkand?")
    await visitor_writes(rt, event)
    ctx = await handle(rt, event)
    assert ctx.sent
    entries = await conversation(rt, visitor)
    assert [e["role"] for e in entries] == ["visitor", "bot"]
    reply = entries[1]
    assert reply["text"] == "Yes, we deliver to Samarkand in two days."
    assert reply["reply_to"] == event.payload["reply_to"] and reply["event_id"] == event.event_id
    assert "notice" not in reply
    key = contract.widget_conversation_stream(rt.tenant_id, bot_id_of(rt), visitor)
    assert 0 < await rt.redis.ttl(key) <= contract.WIDGET_CONVERSATION_TTL
    assert [(e.type, e.channel, e.chat["external_id"]) for e in ctx.events] == [
        ("message.in", "widget", visitor),
        ("message.out", "widget", visitor),
    ]
    assert ctx.events[0].data["text"] == "Do you deliver to Samarkand?"
    out = ctx.events[1].data
    assert out["delivery"] == "sent" and out["provider"] == "offline" and out["sources"] == ["faq"]
    assert out["fallback"] is False and out["reply_to"] == event.payload["reply_to"]
    # Counted toward today's plan limit.
    assert await rt.redis.get(contract.usage_key(rt.tenant_id, runtime.utc_day())) == "1"


async def test_the_conversation_so_far_is_the_history(rt: Runtime) -> None:
    visitor = secrets.token_urlsafe(16)
    key = contract.widget_conversation_stream(rt.tenant_id, bot_id_of(rt), visitor)
    for fields in (
        {"role": "visitor", "text": "Hi", "client_message_id": "m1"},
        {"role": "bot", "text": "Hello! How can I help you?", "reply_to": "m1"},
        {"role": "bot", "text": "Limit reached", "reply_to": "m2", "notice": "limit"},
        {"role": "visitor", "text": "Do you deliver?", "client_message_id": "m3"},
        {"role": "visitor", "text": "later message", "client_message_id": "m4"},
    ):
        await widget.append_to_conversation(rt.redis, key, fields)
    turns, answered = await widget.read_history(rt.redis, key, "m3")
    assert [(t.role, t.text) for t in turns] == [("user", "Hi"), ("assistant", "Hello! How can I help you?")]
    assert answered is None
    _turns, answered = await widget.read_history(rt.redis, key, "m1")
    assert answered is not None and answered["text"] == "Hello! How can I help you?"


async def test_over_the_daily_limit_one_notice_then_nothing(rt: Runtime) -> None:
    assert rt.config is not None
    rt.config = tenant_config(rt.tenant_id, bot_id_of(rt), messages_per_day=1)
    visitor = secrets.token_urlsafe(16)
    await handle(rt, message_event(rt, visitor, "Do you deliver to Samarkand?"))
    over = await handle(rt, message_event(rt, visitor, "Какие у вас часы работы?", language="ru"))
    again = await handle(rt, message_event(rt, visitor, "Hello?"))
    entries = await conversation(rt, visitor)
    assert [e.get("notice") for e in entries] == [None, "limit"]
    ru = translations_for("ru")
    assert entries[1]["text"] == ru.gettext(widget.LIMIT_NOTICE)
    assert over.events[0].data["over_limit"] is True and over.events[1].data["limit_notice"] is True
    assert [e.type for e in again.events] == ["message.in"] and not again.sent


async def test_a_switched_off_bot_says_so(rt: Runtime) -> None:
    rt.config = tenant_config(rt.tenant_id, bot_id_of(rt), is_enabled=False)
    visitor = secrets.token_urlsafe(16)
    ctx = await handle(rt, message_event(rt, visitor, "Do you deliver to Samarkand?", language="uz"))
    entries = await conversation(rt, visitor)
    assert len(entries) == 1 and entries[0]["notice"] == "unavailable"
    assert entries[0]["text"] == translations_for("uz").gettext(widget.UNAVAILABLE_NOTICE)
    assert ctx.sent and ctx.events[0].data.get("dropped") is True
    assert await rt.redis.get(contract.usage_key(rt.tenant_id, runtime.utc_day())) is None  # not counted


async def test_a_redelivered_message_is_not_answered_twice(rt: Runtime) -> None:
    visitor = secrets.token_urlsafe(16)
    event = message_event(rt, visitor, "What are your opening hours?")
    await visitor_writes(rt, event)
    first = await handle(rt, event)
    # The crash came after the XADD but before the sent marker: the entry is delivered again.
    await rt.redis.delete(contract.sent_key(rt.tenant_id, event.event_id))
    again = await handle(rt, event, redelivered=True)
    assert len(await conversation(rt, visitor)) == 2
    assert again.sent
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]  # ingestion stays idempotent
    assert again.events[1].data["text"] == "We are open every day from 9:00 to 21:00."


async def test_a_model_provider_from_the_tenant_config_answers() -> None:
    llm = FakeOpenAI(api_keys=["test-openai-key"], prefix="/compatible-mode/v1")
    with llm.serve():
        llm.enqueue(Reply("We deliver to Samarkand in two days [S1]."))
        tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
        providers = {
            "openai_compat": encrypt_json(
                {"api_key": "test-openai-key", "model": "qwen-plus", "base_url": llm.base_url}
            )
        }
        subject = Runtime(RuntimeSettings(tenant_id=tenant_id, redis_url=os.environ["REDIS_URL"]))
        subject.config = tenant_config(tenant_id, bot_id, providers=providers)
        subject.activate()
        await store_artifact(os.environ["REDIS_URL"], bot_id)
        try:
            visitor = secrets.token_urlsafe(16)
            ctx = await handle(subject, message_event(subject, visitor, "Do you deliver to Samarkand?"))
        finally:
            await widget._on_shutdown(subject)
            await subject.redis.aclose()
        assert ctx.events[1].data["provider"] == "openai_compat"
        assert ctx.events[1].data["text"] == "We deliver to Samarkand in two days."
        assert "Samarkand" in llm.last_request("chat.completions").body["messages"][-1]["content"]


async def test_the_runtime_core_answers_a_widget_message_end_to_end() -> None:
    """The real core reads the entry from the tenant stream, loads this module for the kind, and commits."""
    tenant_id, bot_id = str(uuid.uuid4()), str(uuid.uuid4())
    redis = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    await redis.set(contract.config_key(tenant_id), tenant_config(tenant_id, bot_id).to_json())
    await store_artifact(os.environ["REDIS_URL"], bot_id)
    subject = Runtime(
        RuntimeSettings(tenant_id=tenant_id, redis_url=os.environ["REDIS_URL"], idle_seconds=0, claim_every_seconds=0.2)
    )
    task = asyncio.create_task(subject.run())
    visitor = secrets.token_urlsafe(16)
    key = contract.widget_conversation_stream(tenant_id, bot_id, visitor)
    try:
        for i, question in enumerate(["Do you deliver to Samarkand?", "What are your opening hours?"]):
            event = contract.InboundEvent(
                event_id=f"w:{bot_id}:m{i}",
                bot_id=bot_id,
                kind="widget.message",
                payload={"visitor_id": visitor, "text": question, "language": "en", "reply_to": f"m{i}"},
                received_at=time.time(),
            )
            await redis.xadd(contract.inbound_stream(tenant_id), event.to_fields())
        # The same event queued twice (a retried POST that slipped through) is answered once.
        await redis.xadd(contract.inbound_stream(tenant_id), event.to_fields())
        for _ in range(200):
            replies = [f for _id, f in await redis.xrange(key) if f["role"] == "bot"]
            if len(replies) >= 2:
                break
            await asyncio.sleep(0.05)
        assert [r["text"] for r in replies] == [FAQ[0][1], FAQ[1][1]]
        for _ in range(100):
            pending = await redis.xpending(contract.inbound_stream(tenant_id), contract.RUNTIME_GROUP)
            if int(pending["pending"]) == 0:
                break
            await asyncio.sleep(0.05)
        assert int(pending["pending"]) == 0
        events = [contract.RuntimeEvent.from_fields(f) for _id, f in await redis.xrange(contract.events_stream())]
        mine = [e for e in events if e.tenant_id == tenant_id]
        assert [e.type for e in mine] == ["message.in", "message.out", "message.in", "message.out"]
        assert {e.channel for e in mine} == {"widget"}
        assert {e.chat["external_id"] for e in mine} == {visitor}
        assert await redis.exists(contract.sent_key(tenant_id, f"w:{bot_id}:m0"))
        assert len([f for _id, f in await redis.xrange(key) if f["role"] == "bot"]) == 2
    finally:
        subject.stop(0, "test over")
        assert await asyncio.wait_for(task, 10) == 0
        await redis.aclose()
    assert runtime.handler_for("widget.message") is not None


async def test_over_the_per_chat_rate_limit_one_notice_per_window_and_no_answer(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_CHAT_MESSAGES_PER_MINUTE", "2")
    visitor = secrets.token_urlsafe(16)
    answered = [await handle(rt, message_event(rt, visitor, "Do you deliver to Samarkand?")) for _ in range(2)]
    over = await handle(rt, message_event(rt, visitor, "Какие у вас часы работы?", language="ru"))
    again = await handle(rt, message_event(rt, visitor, "Hello?"))
    other = await handle(rt, message_event(rt, secrets.token_urlsafe(16), "Do you deliver to Samarkand?"))
    assert all(ctx.sent for ctx in answered) and other.sent
    entries = await conversation(rt, visitor)
    assert [e.get("notice") for e in entries] == [None, None, "rate"]
    assert entries[2]["text"].startswith("Вы отправляете сообщения слишком часто")
    assert over.events[0].data["rate_limited"] is True and over.events[1].type == "message.out"
    assert [e.type for e in again.events] == ["message.in"] and again.events[0].data["rate_limited"] is True
    assert not again.sent
    # A rate-limited message does not use up the plan's daily quota.
    usage = await rt.redis.get(contract.usage_key(rt.tenant_id, runtime.utc_day()))
    assert int(usage) == 3


async def test_a_refused_message_carries_the_block_reason_for_the_abuse_log(rt: Runtime) -> None:
    visitor = secrets.token_urlsafe(16)
    text = "Do you deliver? " + "x" * 2100
    ctx = await handle(rt, message_event(rt, visitor, text))
    out = ctx.events[-1]
    assert out.type == "message.out"
    assert (out.data["blocked"], out.data["blocked_direction"], out.data["question"]) == ("too_long", "in", text)
    fine = await handle(rt, message_event(rt, visitor, "Do you deliver to Samarkand?"))
    assert "blocked" not in fine.events[-1].data
