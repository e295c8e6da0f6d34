"""Guardrail refusals on the runtime channels reach the abuse log, once per event."""

from __future__ import annotations

import time

from sqlalchemy import select

from bot_runtime.contract import blocked_fields
from control_plane.models import AbuseLogEntry, Conversation
from tests.control_plane.events.helpers import World, entries, ingest, rows


async def test_a_blocked_answer_is_logged_once_with_its_question(world: World) -> None:
    now = time.time()
    blocked_in = world.exchange(
        "tg:b:1",
        chat="2001",
        at=now,
        text="Sorry, I can't help with that.",
        provider="guardrails",
        model=None,
        tokens_in=0,
        tokens_out=0,
        **blocked_fields("abuse", "guardrails", "you stupid bot"),
    )
    blocked_out = world.exchange(
        "tg:b:2", chat="2002", at=now + 1, **blocked_fields("harmful", "gemini", "how to make a bomb")
    )
    fine = world.exchange("tg:b:3", chat="2003", at=now + 2)
    batch = entries([*blocked_in, *blocked_out, *fine])

    report = await ingest(batch)
    assert report.abuse_logged == 2
    logged = await rows(select(AbuseLogEntry).order_by(AbuseLogEntry.created_at))
    assert [(e.chat_external_id, e.direction, e.reason, e.text, e.channel) for e in logged] == [
        ("2001", "in", "abuse", "you stupid bot", "telegram"),
        ("2002", "out", "harmful", "how to make a bomb", "telegram"),
    ]
    assert all(e.tenant_id == world.tenant_id and e.bot_id == world.bot_id for e in logged)
    assert logged[0].event_id == "tg:b:1:message.out:1"
    conversation = await rows(select(Conversation.id).where(Conversation.id == logged[0].conversation_id))
    assert len(conversation) == 1

    # Redelivered (e.g. a crash between commit and ack): nothing new.
    again = await ingest(batch)
    assert (again.abuse_logged, again.duplicates) == (0, 6)
    assert len(await rows(select(AbuseLogEntry))) == 2


async def test_widget_refusals_are_logged_with_the_visitor_id(world: World) -> None:
    event = world.event(
        "message.out",
        event_id="w:1:message.out:1",
        channel="widget",
        chat={"external_id": "visitor-9"},
        data={"text": "No.", "delivery": "sent", **blocked_fields("spam", "guardrails", "BUY NOW " * 3)},
    )
    report = await ingest([event])
    assert report.abuse_logged == 1
    (entry,) = await rows(select(AbuseLogEntry))
    assert (entry.channel, entry.chat_external_id, entry.reason) == ("widget", "visitor-9", "spam")
