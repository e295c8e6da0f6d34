"""Ingestion rules on the real database: chat users, conversations, messages, idempotency, deliveries, poison."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from control_plane.events import repository
from control_plane.events.service import stored_event_id
from control_plane.kit.db import get_sessionmaker
from control_plane.kit.tenancy import TenantContext
from control_plane.models import (
    AuditLog,
    Broadcast,
    BroadcastDelivery,
    ChatUser,
    Conversation,
    Message,
    Role,
    Tenant,
    TokenUsage,
)
from tests.control_plane.events.helpers import World, count, entries, ingest, rows

HOUR = 3600.0


async def test_a_batch_becomes_chat_users_one_conversation_each_and_messages(world: World) -> None:
    now = time.time()
    batch = [
        *world.exchange("tg:a:1", chat="1001", at=now),
        *world.exchange("tg:a:2", chat="1002", at=now + 1),
        *world.exchange("tg:a:3", chat="1001", at=now + 60),
    ]
    report = await ingest(batch)

    assert (report.messages, report.chat_users, report.conversations_started, report.poison) == (6, 2, 2, [])
    users = await rows(select(ChatUser).order_by(ChatUser.external_id))
    assert [(u.external_id, u.name, u.username, u.language, u.is_reachable) for u in users] == [
        ("1001", "Ann Lee", "ann", "en", True),
        ("1002", "Ann Lee", "ann", "en", True),
    ]
    assert all(u.tenant_id == world.tenant_id and u.bot_id == world.bot_id and u.channel == "telegram" for u in users)
    assert users[0].last_seen_at == datetime.fromtimestamp(now + 60.4, UTC)
    conversations = await rows(select(Conversation).where(Conversation.chat_user_id == users[0].id))
    assert len(conversations) == 1
    assert conversations[0].started_at == datetime.fromtimestamp(now, UTC)
    assert conversations[0].last_message_at == datetime.fromtimestamp(now + 60.4, UTC)

    messages = await rows(
        select(Message).where(Message.conversation_id == conversations[0].id).order_by(Message.created_at)
    )
    assert [m.direction for m in messages] == ["in", "out", "in", "out"]
    answer = messages[1]
    assert (answer.event_id, answer.text, answer.provider, answer.tokens_in, answer.tokens_out) == (
        "tg:a:1:message.out:1",
        "We open at nine.",
        "gemini",
        120,
        30,
    )
    assert (answer.latency_ms, answer.delivery_status, answer.sources, answer.language) == (
        420,
        "sent",
        ["chunk-1", "chunk-2"],
        "en",
    )
    assert messages[0].delivery_status is None and messages[0].provider is None and messages[0].text

    usage = await rows(select(TokenUsage))
    assert [(u.provider, u.model, u.requests, u.tokens_in, u.tokens_out) for u in usage] == [
        ("gemini", "gemini-3.5-flash", 3, 360, 90)
    ]


async def test_redelivering_the_same_events_creates_nothing_new(world: World) -> None:
    now = time.time()
    batch = entries(
        [
            *world.exchange("tg:b:1", at=now),
            *world.exchange("tg:b:2", chat="2002", at=now + 5),
            world.event("chat.unreachable", chat="2002", data={"reason": "blocked"}, at=now + 6),
        ]
    )
    first = await ingest(batch)
    assert first.messages == 4
    snapshot = await rows(select(Conversation.last_message_at).order_by(Conversation.id))

    again = await ingest(batch)  # same entries, same event ids: e.g. a crash between commit and ack
    assert (again.messages, again.conversations_started, again.duplicates, again.poison) == (0, 0, 4, [])
    assert await count(Message) == 4
    assert await count(Conversation) == 2
    assert await count(ChatUser) == 2
    assert await rows(select(Conversation.last_message_at).order_by(Conversation.id)) == snapshot
    usage = await rows(select(TokenUsage))
    assert [(u.requests, u.tokens_in) for u in usage] == [(2, 240)]

    # Duplicates inside one batch are dropped too.
    duplicated = world.exchange("tg:b:3", at=now + 10)
    report = await ingest(entries([*duplicated, *duplicated]))
    assert (report.messages, report.duplicates) == (2, 2)


async def test_an_idle_gap_starts_a_new_conversation(world: World) -> None:
    start = time.time() - 30 * HOUR
    await ingest(world.exchange("tg:c:1", at=start))
    await ingest(world.exchange("tg:c:2", at=start + 11 * HOUR))  # within 12 h of the last message
    # Past the gap, within one batch: the second exchange continues the conversation the first one opened.
    report = await ingest(
        [*world.exchange("tg:c:3", at=start + 24 * HOUR), *world.exchange("tg:c:4", at=start + 25 * HOUR)]
    )
    assert report.conversations_started == 1
    conversations = await rows(select(Conversation).order_by(Conversation.started_at))
    assert len(conversations) == 2
    assert conversations[1].started_at == datetime.fromtimestamp(start + 24 * HOUR, UTC)
    assert conversations[1].last_message_at == datetime.fromtimestamp(start + 25 * HOUR + 0.4, UTC)
    per_conversation = [await count(Message, Message.conversation_id == c.id) for c in conversations]
    assert per_conversation == [4, 4]

    # A shorter gap setting splits sooner.
    report = await ingest(world.exchange("tg:c:5", at=start + 27 * HOUR), idle_gap=timedelta(hours=1))
    assert report.conversations_started == 1


async def test_chat_users_are_per_bot_and_channel_and_keep_known_details(world: World) -> None:
    now = time.time()
    await ingest(world.exchange("tg:d:1", at=now))
    widget = world.event(
        "message.in", chat={"external_id": "1001"}, channel="widget", data={"text": "hi", "language": "ru"}, at=now
    )
    other_bot = world.event("message.in", chat="1001", bot_id=world.other_bot_id, at=now)
    renamed = world.event(
        "message.in",
        chat={"external_id": "1001", "name": "Ann Smith", "username": "", "language": "zh-hans"},
        at=now + 1,
    )
    report = await ingest([widget, other_bot, renamed])
    assert report.chat_users == 3
    users = await rows(select(ChatUser).order_by(ChatUser.first_seen_at, ChatUser.channel))
    assert len(users) == 3
    telegram = next(u for u in users if u.channel == "telegram" and u.bot_id == world.bot_id)
    # A blank username keeps the stored one; a long language tag is cut to its primary subtag.
    assert (telegram.name, telegram.username, telegram.language) == ("Ann Smith", "ann", "zh")
    assert telegram.last_seen_at == datetime.fromtimestamp(now + 1, UTC)
    visitor = next(u for u in users if u.channel == "widget")
    # The widget knows no name; the message's language stands in for the chat's.
    assert (visitor.name, visitor.language) == ("", "ru")


async def test_delivery_status_and_reachability(world: World) -> None:
    now = time.time()
    await ingest(world.exchange("tg:e:1", chat="3003", at=now, delivery="blocked"))
    user = (await rows(select(ChatUser)))[0]
    assert user.is_reachable is False
    out = (await rows(select(Message).where(Message.direction == "out")))[0]
    assert out.delivery_status == "blocked"

    # Writing again means the customer unblocked the bot.
    await ingest([world.event("message.in", chat="3003", data={"text": "back"}, at=now + 10)])
    assert (await rows(select(ChatUser.is_reachable)))[0] is True

    # chat.unreachable alone: unreachable, and last_seen_at does not move (nobody wrote).
    before = (await rows(select(ChatUser.last_seen_at)))[0]
    await ingest([world.event("chat.unreachable", chat="3003", data={"reason": "blocked by the user"}, at=now + 99)])
    user = (await rows(select(ChatUser)))[0]
    assert (user.is_reachable, user.last_seen_at) == (False, before)

    # An unknown chat that is unreachable is created as such.
    await ingest([world.event("chat.unreachable", chat="4004", at=now)])
    assert (await rows(select(ChatUser.is_reachable).where(ChatUser.external_id == "4004"))) == [False]


async def test_a_fallback_answer_flags_the_question_even_across_batches(world: World) -> None:
    now = time.time()
    await ingest(world.exchange("tg:f:1", at=now, fallback=True))
    pair = world.exchange("tg:f:2", at=now + 1, fallback=True)
    await ingest(pair[:1])
    await ingest(pair[1:])
    await ingest(world.exchange("tg:f:3", at=now + 2))
    flagged = await rows(select(Message.event_id).where(Message.direction == "in", Message.fallback.is_(True)))
    assert sorted(flagged) == ["tg:f:1:message.in:0", "tg:f:2:message.in:0"]


async def test_offline_answers_and_notices_spend_no_tokens(world: World) -> None:
    now = time.time()
    await ingest(
        [
            *world.exchange("tg:g:1", at=now, provider="offline", tokens_in=0, tokens_out=0),
            *world.exchange("tg:g:2", at=now, provider=None, model=None, tokens_in=0, tokens_out=0),
        ]
    )
    assert await count(TokenUsage) == 0
    assert await count(Message) == 4


async def _broadcast(world: World, chats: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    async with get_sessionmaker()() as db:
        broadcast = Broadcast(html="<b>Sale</b>", status="sending", total=chats)
        db.add(broadcast)
        await db.flush()
        deliveries = []
        for n in range(chats):
            user = ChatUser(tenant_id=world.tenant_id, bot_id=world.bot_id, channel="telegram", external_id=f"b{n}")
            db.add(user)
            await db.flush()
            delivery = BroadcastDelivery(
                tenant_id=world.tenant_id, broadcast_id=broadcast.id, bot_id=world.bot_id, chat_user_id=user.id
            )
            db.add(delivery)
            deliveries.append(delivery)
        await db.commit()
        return broadcast.id, [d.id for d in deliveries]


async def test_broadcast_counters_move_exactly_once_per_delivery(world: World) -> None:
    broadcast_id, (d1, d2, d3) = await _broadcast(world, 3)

    def delivery(delivery_id: uuid.UUID, status: str, error: str | None = None) -> object:
        return world.event(
            "broadcast.delivery",
            event_id=f"bc:{delivery_id}:{uuid.uuid4().hex}",
            chat={},
            data={"delivery_id": str(delivery_id), "status": status, "error": error},
        )

    sent = delivery(d1, "sent")
    batch = entries([sent, delivery(d1, "sent"), delivery(d2, "failed", "timeout")])
    await ingest(batch)
    await ingest(batch)  # the same entries again
    await ingest([sent, delivery(d1, "sent")])  # and the same report under new event ids
    await ingest([delivery(d1, "failed", "late")])  # "sent" is final

    async def state() -> tuple[int, int, dict[uuid.UUID, str]]:
        async with get_sessionmaker()() as db:
            b = await db.get(Broadcast, broadcast_id)
            assert b is not None
            statuses = dict((await db.execute(select(BroadcastDelivery.id, BroadcastDelivery.status))).all())
            return b.delivered, b.failed, statuses

    assert await state() == (1, 1, {d1: "sent", d2: "failed", d3: "pending"})

    # A retry that succeeds moves the delivery from failed to delivered; a block marks the chat unreachable.
    await ingest([delivery(d2, "sent"), delivery(d3, "failed"), delivery(d3, "blocked", "Forbidden")])
    assert await state() == (2, 1, {d1: "sent", d2: "sent", d3: "blocked"})
    blocked_user = await rows(select(ChatUser.is_reachable).join(BroadcastDelivery).where(BroadcastDelivery.id == d3))
    assert blocked_user == [False]
    errors = await rows(select(BroadcastDelivery.error).where(BroadcastDelivery.id == d3))
    assert errors == ["Forbidden"]


async def test_poison_entries_are_reported_and_the_rest_is_ingested(world: World) -> None:
    good = world.exchange("tg:h:1")
    stranger = world.event("message.in", bot_id=uuid.uuid4())
    wrong_tenant = world.event("message.in", tenant_id=uuid.uuid4())
    no_chat = world.event("message.in", chat={"name": "nobody"})
    unknown = world.event("message.read")
    batch = [
        ("1-1", {"data": "{not json"}),
        ("1-2", {"other": "field"}),
        ("1-3", {"data": json.dumps({"event_id": "x", "type": "message.in"})}),
        ("1-4", {}),
        *entries([good[0], stranger, wrong_tenant, no_chat, unknown, good[1]]),
    ]
    report = await ingest(batch)
    assert report.messages == 2
    reasons = {p.entry_id: p.reason for p in report.poison}
    assert len(reasons) == 8
    assert reasons[batch[5][0]] == "bot no longer exists"
    assert reasons[batch[6][0]] == "bot belongs to another tenant"
    assert "unparseable" in reasons["1-1"]
    stranger_poison = next(p for p in report.poison if p.entry_id == batch[5][0])
    assert stranger_poison.tenant_id == str(world.tenant_id)


async def test_a_deleted_bot_makes_its_events_poison(world: World) -> None:
    async with get_sessionmaker()() as db:
        from control_plane.models import Bot

        bot = await db.get(Bot, world.other_bot_id)
        await db.delete(bot)
        await db.commit()
    report = await ingest([world.event("message.in", bot_id=world.other_bot_id)])
    assert [p.reason for p in report.poison] == ["bot no longer exists"]
    assert await count(Message) == 0


async def test_long_event_ids_and_nul_characters_are_stored_safely(world: World) -> None:
    long_id = "w:" + "x" * 200
    event = world.event("message.in", event_id=f"{long_id}:message.in:0", data={"text": "a\x00b"})
    await ingest([event])
    await ingest([event])
    stored = await rows(select(Message))
    assert [(m.event_id, m.text) for m in stored] == [(stored_event_id(f"{long_id}:message.in:0"), "ab")]


async def test_runtime_errors_are_audited_once(world: World) -> None:
    now = time.time()
    errors = [
        world.event("runtime.error", chat={}, data={"error": "telegram rejected the bot token"}, at=now + n)
        for n in range(3)
    ]
    batch = entries(errors)
    report = await ingest(batch)
    await ingest(batch)
    assert report.runtime_errors == 3
    audits = await rows(select(AuditLog))
    assert len(audits) == 1
    assert (audits[0].tenant_id, audits[0].action, audits[0].target_id) == (
        world.tenant_id,
        "runtime.error",
        str(world.bot_id),
    )
    assert audits[0].data["count"] == 3


async def test_usage_by_bot_for_a_date_range(world: World) -> None:
    day = datetime(2026, 11, 20, tzinfo=UTC)
    at = day.timestamp()
    await ingest(
        [
            *world.exchange("tg:u:1", at=at + HOUR, tokens_in=100, tokens_out=10),
            *world.exchange("tg:u:2", at=at + 2 * HOUR, tokens_in=50, tokens_out=5),
            *world.exchange("tg:u:3", at=at + 30 * HOUR, tokens_in=1000, tokens_out=100),  # the next day
            *world.exchange("tg:u:4", at=at + 3 * HOUR, provider="offline", tokens_in=0, tokens_out=0),
        ]
    )
    await ingest([world.event("message.out", bot_id=world.other_bot_id, data={"tokens_in": 7, "tokens_out": 1}, at=at)])
    async with get_sessionmaker()() as db:
        tenant = await db.get(Tenant, world.tenant_id)
        assert tenant is not None
        ctx = TenantContext(user_id=uuid.uuid4(), tenant=tenant, role=Role.owner)
        usage = await repository.usage_by_bot(db, ctx, start=day, end=day + timedelta(days=1))
        only_first = await repository.usage_by_bot(
            db, ctx, start=day, end=day + timedelta(days=2), bot_ids=[world.bot_id]
        )
        other_tenant = TenantContext(user_id=uuid.uuid4(), tenant=Tenant(id=uuid.uuid4(), name="x"), role=Role.owner)
        nothing = await repository.usage_by_bot(db, other_tenant, start=day, end=day + timedelta(days=1))
    by_bot = {u.bot_id: u for u in usage}
    assert (by_bot[world.bot_id].answers, by_bot[world.bot_id].model_answers) == (3, 2)
    assert (by_bot[world.bot_id].tokens_in, by_bot[world.bot_id].tokens_out) == (150, 15)
    assert (by_bot[world.other_bot_id].tokens_in, by_bot[world.other_bot_id].tokens_out) == (7, 1)
    assert [(u.bot_id, u.tokens_in) for u in only_first] == [(world.bot_id, 1150)]
    assert nothing == []
