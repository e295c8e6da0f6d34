"""Telegram guardrail plumbing: the per-chat rate limit, and refusals carrying their reason for the abuse log."""

from __future__ import annotations

import pytest

from bot_runtime import ratelimit
from bot_runtime.answering.schemas import AnswerResult
from bot_runtime.channels.telegram import Question, TelegramChannel
from bot_runtime.runtime import HandlerContext, Runtime
from tests.bot_runtime.channels.helpers import TOKEN, ScriptedAnswers, process
from tests.fakes import FakeTelegramAPI

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

CHAT = 778


def events(ctx: HandlerContext, kind: str) -> list[dict[str, object]]:
    return [event.data for event in ctx.events if event.type == kind]


async def test_over_the_per_chat_rate_limit_one_notice_then_silence(
    channel: TelegramChannel,
    runtime: Runtime,
    telegram: FakeTelegramAPI,
    answers: ScriptedAnswers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ratelimit.ENV_NAME, "1")
    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "first"))
    limited = await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "second"))
    silent = await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "third"))
    other = await process(channel, runtime, telegram.push_text(TOKEN, CHAT + 1, "hello"))

    first, notice = telegram.sent_texts(TOKEN, CHAT)
    assert first == "Answer: first"
    assert notice.startswith("You are sending messages too quickly.")
    assert [q.text for q in answers.questions] == ["first", "hello"]
    assert events(limited, "message.in")[0]["rate_limited"] is True
    assert events(silent, "message.in")[0]["rate_limited"] is True and events(silent, "message.out") == []
    assert other.sent


async def test_a_refused_question_carries_its_reason(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    async def refuse(question: Question) -> AnswerResult:
        return AnswerResult(text="I can't help with that.", provider="guardrails", blocked="abuse")

    channel.set_answer_function(refuse)
    ctx = await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "you idiot"))
    (out,) = events(ctx, "message.out")
    assert (out["blocked"], out["blocked_direction"], out["question"]) == ("abuse", "in", "you idiot")


async def test_the_rate_limit_counts_a_redelivered_entry_once(runtime: Runtime) -> None:
    args = (runtime.redis, runtime.tenant_id, "bot", "telegram", "1")
    first = await ratelimit.check_chat_rate(*args, event_id="e1", limit=1, now=120.0)
    again = await ratelimit.check_chat_rate(*args, event_id="e1", limit=1, now=121.0)
    over = await ratelimit.check_chat_rate(*args, event_id="e2", limit=1, now=122.0)
    later = await ratelimit.check_chat_rate(*args, event_id="e3", limit=1, now=123.0)
    next_window = await ratelimit.check_chat_rate(*args, event_id="e4", limit=1, now=180.0)
    assert first.allowed and again.allowed
    assert (over.allowed, over.notice, over.retry_after) == (False, True, 58)
    assert (later.allowed, later.notice) == (False, False)
    assert next_window.allowed
    assert ratelimit.per_minute({}) == 20 and ratelimit.per_minute({ratelimit.ENV_NAME: "5"}) == 5
