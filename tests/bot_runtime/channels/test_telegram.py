"""The runtime's Telegram channel with the real python-telegram-bot against the fake Bot API."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot_runtime.channels.telegram import TelegramChannel
from bot_runtime.runtime import HandlerContext, Runtime
from tests.bot_runtime.channels.helpers import BOT_USERNAME, TOKEN, ScriptedAnswers, bot_id_of, process, tenant_config
from tests.fakes import FakeTelegramAPI

# ptb itself reads RetryAfter.retry_after as an int while building its message; that deprecation is ptb's, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

CHAT = 777
GROUP = -100123


def events(ctx: HandlerContext, kind: str) -> list[dict[str, object]]:
    return [event.data for event in ctx.events if event.type == kind]


async def test_start_greets_with_the_welcome_message(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    ctx = await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "/start"))

    assert telegram.sent_texts(TOKEN, CHAT) == ["Welcome to Shop!"]
    assert ctx.sent is True
    (message_in,) = events(ctx, "message.in")
    assert message_in["type"] == "command" and message_in["text"] == "/start"
    (message_out,) = events(ctx, "message.out")
    assert message_out["delivery"] == "sent" and message_out["text"] == "Welcome to Shop!"


async def test_start_without_welcome_message_uses_the_translated_default(
    telegram: FakeTelegramAPI, runtime: Runtime, answers: ScriptedAnswers
) -> None:
    runtime.config = tenant_config(runtime.tenant_id, bot_id_of(runtime), welcome="")
    tg = TelegramChannel(answer=answers, api_base_url=telegram.base_url)
    await tg.apply_config(runtime, runtime.config)
    try:
        await process(tg, runtime, telegram.push_text(TOKEN, CHAT, "/start"))
    finally:
        await tg.aclose()
    (text,) = telegram.sent_texts(TOKEN, CHAT)
    assert "Shop" in text and text.startswith("Hello!")


async def test_help(channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI) -> None:
    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "/help"))
    (text,) = telegram.sent_texts(TOKEN, CHAT)
    assert "/start" in text and "/help" in text


async def test_quick_answer_shows_no_typing(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "Hello there, how are you?"))

    assert telegram.sent_texts(TOKEN, CHAT) == ["Answer: Hello there, how are you?"]
    assert telegram.chat_actions(TOKEN, CHAT) == []


async def test_text_is_answered_with_typing_and_events(
    channel: TelegramChannel,
    runtime: Runtime,
    telegram: FakeTelegramAPI,
    answers: ScriptedAnswers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot_runtime.channels.telegram.TYPING_AFTER_SECONDS", 0.05)
    answers.delay = 0.5  # a slow answer: "typing…" shows while it is made
    update = telegram.push_text(TOKEN, CHAT, "How much is delivery to Samarkand?", username="alice")

    ctx = await process(channel, runtime, update)

    assert telegram.sent_texts(TOKEN, CHAT) == ["Answer: How much is delivery to Samarkand?"]
    assert [action.action for action in telegram.chat_actions(TOKEN, CHAT)][:1] == ["typing"]
    assert telegram.chat_actions(TOKEN, CHAT)[0].at <= telegram.sent_messages(TOKEN, CHAT)[0].at
    (question,) = answers.questions
    assert question.language == "en" and question.bot.name == "Shop"
    chat = ctx.events[0].chat
    assert chat == {
        "external_id": str(CHAT),
        "type": "private",
        "name": "Alice",
        "username": "alice",
        "language": "en",
    }
    (message_out,) = events(ctx, "message.out")
    assert message_out["provider"] == "scripted" and message_out["model"] == "script-1"
    assert (message_out["tokens_in"], message_out["tokens_out"]) == (3, 5)
    assert message_out["sources"] == ["src-1"] and message_out["fallback"] is False
    assert message_out["delivery"] == "sent" and isinstance(message_out["latency_ms"], int)
    assert [e.event_id for e in ctx.events] == [
        f"{ctx.event.event_id}:message.in:0",
        f"{ctx.event.event_id}:message.out:1",
    ]


async def test_language_comes_from_the_text_or_else_from_telegram(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> None:
    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "Сколько стоит доставка в Ташкент?"))
    await process(channel, runtime, telegram.push_text(TOKEN, CHAT + 1, "ok", language_code="uz"))
    assert [q.language for q in answers.questions] == ["ru", "uz"]
    assert answers.questions[1].language_hint == "uz"


async def test_history_is_passed_to_the_next_question(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> None:
    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "Do you deliver?"))
    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "And on Sundays?"))
    history = answers.questions[1].history
    assert [(t.role, t.text) for t in history] == [
        ("user", "Do you deliver?"),
        ("assistant", "Answer: Do you deliver?"),
    ]


async def test_groups_answer_only_when_mentioned_replied_to_or_commanded(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> None:
    chatter = await process(channel, runtime, telegram.push_group_text(TOKEN, GROUP, "lunch anyone?", mention=False))
    assert telegram.sent_texts(TOKEN, GROUP) == [] and chatter.events == []

    await process(channel, runtime, telegram.push_group_text(TOKEN, GROUP, "what are your hours?"))
    assert answers.questions[-1].text == "what are your hours?"  # the mention is not part of the question
    (answer,) = telegram.sent_messages(TOKEN, GROUP)
    assert answer.text == "Answer: what are your hours?"
    assert answer.params["reply_parameters"]  # the answer quotes the question in a group

    bot_message = {"message_id": answer.message_id, "from": {"id": 424242, "is_bot": True, "first_name": "Shop",
                   "username": BOT_USERNAME}, "chat": {"id": GROUP, "type": "supergroup", "title": "G"}, "date": 1,
                   "text": answer.text}  # fmt: skip
    reply = telegram.push_update(
        TOKEN,
        {
            "message": {
                "message_id": 99,
                "from": {"id": 1001, "is_bot": False, "first_name": "Bob", "language_code": "en"},
                "chat": {"id": GROUP, "type": "supergroup", "title": "G"},
                "date": int(time.time()),
                "text": "and on Sunday?",
                "reply_to_message": bot_message,
            }
        },
    )
    await process(channel, runtime, reply)
    assert telegram.sent_texts(TOKEN, GROUP)[-1] == "Answer: and on Sunday?"

    await process(channel, runtime, telegram.push_command(TOKEN, GROUP, "help"))
    assert "/start" in telegram.sent_texts(TOKEN, GROUP)[-1]

    other_bot = telegram.push_group_text(TOKEN, GROUP, "/start@other_bot", mention=False)
    other_bot["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": 16}]
    await process(channel, runtime, other_bot)
    assert len(telegram.sent_texts(TOKEN, GROUP)) == 3


async def test_edited_message_is_answered_like_a_new_one(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    original = telegram.push_text(TOKEN, CHAT, "Do you sell bikes?")
    await process(channel, runtime, original)
    edited = telegram.push_edited_text(TOKEN, CHAT, original["message"]["message_id"], "Do you sell e-bikes?")

    ctx = await process(channel, runtime, edited)

    assert telegram.sent_texts(TOKEN, CHAT) == ["Answer: Do you sell bikes?", "Answer: Do you sell e-bikes?"]
    assert events(ctx, "message.in")[0]["edited"] is True


async def test_photo_gets_a_polite_text_only_reply(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> None:
    ctx = await process(channel, runtime, telegram.push_photo(TOKEN, CHAT, caption="is this in stock?"))

    (text,) = telegram.sent_texts(TOKEN, CHAT)
    assert "text" in text.lower()
    assert answers.questions == []
    assert events(ctx, "message.in")[0]["type"] == "photo"


async def test_long_answer_is_split_on_paragraphs(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> None:
    paragraphs = [f"Paragraph {i}. " + ("All about our shop and its goods. " * 40).strip() for i in range(8)]
    answers.text = "\n\n".join(paragraphs)
    assert len(answers.text) > 2 * 4096

    ctx = await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "Tell me everything"))

    sent = telegram.sent_messages(TOKEN, CHAT)
    assert len(sent) == 4  # two ~1370-character paragraphs fit in a message, three would not
    assert all(len(m.text) <= 4096 for m in sent)
    assert all(m.text.endswith("goods.") for m in sent)  # cut between paragraphs, not inside one
    assert "\n\n".join(m.text for m in sent) == answers.text
    assert telegram.max_sends_in_window(TOKEN, chat_id=CHAT) == 1  # parts respect the per-chat limit
    assert events(ctx, "message.out")[0]["parts"] == 4


async def test_answer_html_is_escaped_and_accepted(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> None:
    answers.text = "<script>alert('x')</script> & **Open** daily, see `<b>` tag <br> 1 < 2"

    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "<i>hi</i>"))

    (message,) = telegram.sent_messages(TOKEN, CHAT)
    assert message.parse_mode == "HTML"
    assert message.raw_text.startswith("&lt;script&gt;alert('x')&lt;/script&gt; &amp; <b>Open</b>")
    assert message.text == "<script>alert('x')</script> & Open daily, see <b> tag <br> 1 < 2"
    assert [(e["type"], e["length"]) for e in message.entities] == [("bold", 4), ("code", 3)]
    assert answers.questions[0].text == "<i>hi</i>"  # the customer's text reaches the engine untouched


async def test_blocked_chat_emits_chat_unreachable(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    telegram.block_chat(TOKEN, CHAT)

    ctx = await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "hi there"))

    (unreachable,) = [e for e in ctx.events if e.type == "chat.unreachable"]
    assert unreachable.chat["external_id"] == str(CHAT)
    assert "blocked" in str(unreachable.data["reason"])
    assert events(ctx, "message.out")[0]["delivery"] == "blocked"
    assert ctx.sent is False
    assert [c.status for c in telegram.calls(TOKEN, "sendMessage")] == [403]  # not retried


async def test_blocking_the_bot_emits_chat_unreachable(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    user = {"id": CHAT, "is_bot": False, "first_name": "Alice"}
    bot_user = {"id": 424242, "is_bot": True, "first_name": "Shop", "username": BOT_USERNAME}
    update = telegram.push_update(
        TOKEN,
        {
            "my_chat_member": {
                "chat": {"id": CHAT, "type": "private", "first_name": "Alice"},
                "from": user,
                "date": int(time.time()),
                "old_chat_member": {"status": "member", "user": bot_user},
                "new_chat_member": {"status": "kicked", "user": bot_user, "until_date": 0},
            }
        },
    )
    ctx = await process(channel, runtime, update)
    assert [e.type for e in ctx.events] == ["chat.unreachable"]


async def test_retry_after_is_honoured(channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI) -> None:
    telegram.inject_retry_after(TOKEN, 1, methods=["sendMessage"])

    await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "hi"))

    calls = telegram.calls(TOKEN, "sendMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0
    assert telegram.sent_texts(TOKEN, CHAT) == ["Answer: hi"]


async def test_over_the_daily_limit_a_chat_gets_one_notice_and_nothing_else(
    telegram: FakeTelegramAPI, runtime: Runtime, answers: ScriptedAnswers
) -> None:
    runtime.config = tenant_config(runtime.tenant_id, bot_id_of(runtime), messages_per_day=1)
    tg = TelegramChannel(answer=answers, api_base_url=telegram.base_url)
    await tg.apply_config(runtime, runtime.config)
    try:
        await process(tg, runtime, telegram.push_text(TOKEN, CHAT, "first"))
        limited = await process(tg, runtime, telegram.push_text(TOKEN, CHAT, "second"))
        silent = await process(tg, runtime, telegram.push_text(TOKEN, CHAT, "third"))
        await process(tg, runtime, telegram.push_text(TOKEN, CHAT + 1, "/start"))
    finally:
        await tg.aclose()

    first, notice = telegram.sent_texts(TOKEN, CHAT)
    assert first == "Answer: first"
    assert "tomorrow" in notice
    assert [q.text for q in answers.questions] == ["first"]
    assert events(limited, "message.out")[0]["limit_notice"] is True
    assert events(silent, "message.in")[0]["over_limit"] is True and events(silent, "message.out") == []
    assert len(telegram.sent_texts(TOKEN, CHAT + 1)) == 1  # another chat gets its own notice


async def test_forty_quick_replies_stay_under_thirty_per_second(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    updates = [telegram.push_text(TOKEN, 5000 + i, f"q{i}") for i in range(40)]
    started = time.monotonic()

    await asyncio.gather(*(process(channel, runtime, update) for update in updates))

    assert len(telegram.sent_messages(TOKEN)) == 40
    assert telegram.max_sends_in_window(TOKEN) <= 30
    assert time.monotonic() - started >= 1.0


async def test_replies_to_one_chat_are_a_second_apart(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    updates = [telegram.push_text(TOKEN, CHAT, f"q{i}") for i in range(3)]

    await asyncio.gather(*(process(channel, runtime, update) for update in updates))

    times = sorted(m.at for m in telegram.sent_messages(TOKEN, CHAT))
    assert len(times) == 3
    assert telegram.max_sends_in_window(TOKEN, chat_id=CHAT) == 1
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[1:], strict=False))


async def test_default_answerer_is_the_answering_engine(telegram: FakeTelegramAPI, runtime: Runtime) -> None:
    tg = TelegramChannel(api_base_url=telegram.base_url)
    assert runtime.config is not None
    await tg.apply_config(runtime, runtime.config)
    try:
        ctx = await process(tg, runtime, telegram.push_text(TOKEN, CHAT, "hello"))
        await process(tg, runtime, telegram.push_text(TOKEN, CHAT, "Do you ship to Bukhara on weekends?"))
    finally:
        await tg.aclose()
    greeting, fallback = telegram.sent_texts(TOKEN, CHAT)
    assert greeting == "Hello! How can I help you?"  # the offline answerer's small talk
    assert fallback.startswith("Sorry")  # nothing in the (empty) knowledge base: the fallback message
    assert events(ctx, "message.out")[0]["provider"] == "offline"


async def test_disconnected_bot_drops_its_updates(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    assert runtime.config is not None
    runtime.config.bots[0].channels = []
    await channel.apply_config(runtime, runtime.config)

    ctx = await process(channel, runtime, telegram.push_text(TOKEN, CHAT, "hello?"))

    assert telegram.sent_texts(TOKEN) == [] and ctx.events == [] and channel.bots == {}


async def test_unreachable_api_is_raised_for_the_core_to_retry(
    telegram: FakeTelegramAPI, runtime: Runtime, answers: ScriptedAnswers
) -> None:
    from telegram.error import NetworkError

    tg = TelegramChannel(answer=answers, api_base_url="http://127.0.0.1:9")  # nothing listens there
    assert runtime.config is not None
    await tg.apply_config(runtime, runtime.config)
    try:
        with pytest.raises(NetworkError):
            await process(tg, runtime, telegram.push_text(TOKEN, CHAT, "hi"))
    finally:
        await tg.aclose()


async def test_revoked_token_is_reported_not_retried(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI, answers: ScriptedAnswers
) -> None:
    telegram.revoke_bot(TOKEN)
    tg = TelegramChannel(answer=answers, api_base_url=telegram.base_url)
    assert runtime.config is not None
    await tg.apply_config(runtime, runtime.config)
    try:
        ctx = await process(tg, runtime, {"update_id": 1, "message": {"message_id": 1, "date": 1, "text": "hi",
                                          "chat": {"id": CHAT, "type": "private"}}})  # fmt: skip
    finally:
        await tg.aclose()
    assert [e.type for e in ctx.events] == ["runtime.error"]


async def test_broadcasts_share_the_bots_limiter_with_replies(
    channel: TelegramChannel, runtime: Runtime, telegram: FakeTelegramAPI
) -> None:
    bot_id = bot_id_of(runtime)
    reply = process(channel, runtime, telegram.push_text(TOKEN, CHAT, "hi"))
    broadcast = channel.send_html(bot_id, CHAT, "<b>Sale</b> &amp; more")
    plain = channel.send_text(bot_id, CHAT, "<not a tag>")

    _ctx, html_delivery, text_delivery = await asyncio.gather(reply, broadcast, plain)

    assert (html_delivery, text_delivery) == ("sent", "sent")
    assert sorted(telegram.sent_texts(TOKEN, CHAT)) == ["<not a tag>", "Answer: hi", "Sale & more"]
    assert telegram.max_sends_in_window(TOKEN, chat_id=CHAT) == 1
    telegram.block_chat(TOKEN, CHAT + 1)
    assert await channel.send_text(bot_id, CHAT + 1, "hello") == "blocked"
    assert await channel.send_text("unknown-bot", CHAT, "hello") == "failed"
