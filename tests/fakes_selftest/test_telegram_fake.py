"""The fake Telegram Bot API, driven by the real python-telegram-bot: if ptb is happy, our runtime will be too."""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import Bot, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes, MessageHandler, filters

from tests.fakes import FakeTelegramAPI, make_token
from tests.fakes.telegram_api import parse_html

TOKEN = make_token(424242)
OTHER_TOKEN = make_token(515151)
CHAT = 777


@pytest.fixture
async def bot(telegram: FakeTelegramAPI) -> AsyncIterator[Bot]:
    telegram.register_bot(TOKEN, username="shop_bot", first_name="Shop")
    async with Bot(TOKEN, base_url=telegram.api_base_url, base_file_url=telegram.file_base_url) as bot:
        yield bot


def build_app(telegram: FakeTelegramAPI) -> Application:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("Welcome!")

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"You said: {update.effective_message.text}")

    app = (
        ApplicationBuilder().token(TOKEN).base_url(telegram.api_base_url).base_file_url(telegram.file_base_url).build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    return app


async def test_polling_application_answers_start_and_text(telegram: FakeTelegramAPI) -> None:
    telegram.register_bot(TOKEN, username="shop_bot")
    app = build_app(telegram)
    telegram.push_text(TOKEN, CHAT, "/start")
    telegram.push_text(TOKEN, CHAT, "hello")

    async with app:
        await app.updater.start_polling(poll_interval=0.0, timeout=1)  # type: ignore[union-attr]
        await app.start()
        await telegram.await_sent(TOKEN, CHAT, count=2)
        await app.updater.stop()  # type: ignore[union-attr]
        await app.stop()

    assert telegram.sent_texts(TOKEN, CHAT) == ["Welcome!", "You said: hello"]
    # ptb confirms the last offset on stop, so nothing is redelivered to the next poller.
    assert telegram.pending_updates(TOKEN) == []
    methods = [c.method for c in telegram.calls(TOKEN)]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]


async def test_long_poll_wakes_up_when_an_update_arrives(telegram: FakeTelegramAPI, bot: Bot) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=2))
    await asyncio.sleep(0.1)
    telegram.push_text(TOKEN, CHAT, "hi")
    updates = await poll
    assert [u.message.text for u in updates if u.message] == ["hi"]
    assert time.monotonic() - started < 1.0


async def test_long_poll_without_updates_is_capped_at_two_seconds(telegram: FakeTelegramAPI, bot: Bot) -> None:
    telegram.long_poll_cap = 0.3  # the cap is configurable; the default 2 s would slow this test down
    try:
        started = time.monotonic()
        assert await bot.get_updates(timeout=30) == ()
        assert 0.25 < time.monotonic() - started < 1.5
    finally:
        telegram.long_poll_cap = 2.0


async def test_offset_confirms_earlier_updates(telegram: FakeTelegramAPI, bot: Bot) -> None:
    ids = [telegram.push_text(TOKEN, CHAT, f"m{i}")["update_id"] for i in range(3)]

    assert [u.update_id for u in await bot.get_updates()] == ids
    assert [u.update_id for u in await bot.get_updates(offset=ids[1])] == ids[1:]
    assert [u.update_id for u in await bot.get_updates()] == ids[1:]  # the offset was remembered by dropping
    assert await bot.get_updates(offset=ids[-1] + 1) == ()
    assert telegram.pending_updates(TOKEN) == []

    more = [telegram.push_text(TOKEN, CHAT, f"n{i}")["update_id"] for i in range(3)]
    assert [u.update_id for u in await bot.get_updates(offset=-1)] == more[-1:]


async def test_limit_and_allowed_updates(telegram: FakeTelegramAPI, bot: Bot) -> None:
    for i in range(3):
        telegram.push_text(TOKEN, CHAT, f"m{i}")
    assert len(await bot.get_updates(limit=2)) == 2
    reaction = {
        "chat": {"id": CHAT, "type": "private"},
        "message_id": 1,
        "user": {"id": CHAT, "is_bot": False, "first_name": "Alice"},
        "date": int(time.time()),
        "old_reaction": [],
        "new_reaction": [{"type": "emoji", "emoji": "👍"}],
    }
    telegram.push_update(TOKEN, {"message_reaction": reaction})
    # message_reaction is opt-in: not delivered unless allowed_updates asks for it.
    assert len(await bot.get_updates()) == 3
    assert len(await bot.get_updates(allowed_updates=["message_reaction"])) == 1


async def test_second_long_poll_terminates_the_first_with_conflict(telegram: FakeTelegramAPI, bot: Bot) -> None:
    # Two instances of one bot, as when a deploy leaves the old process running: the newest poll wins.
    async with Bot(TOKEN, base_url=telegram.api_base_url) as twin:
        first = asyncio.create_task(bot.get_updates(timeout=2))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(twin.get_updates(timeout=2))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await first
        telegram.push_text(TOKEN, CHAT, "for the survivor")
        assert len(await second) == 1


async def test_webhook_is_recorded_and_blocks_polling(telegram: FakeTelegramAPI, bot: Bot) -> None:
    assert await bot.set_webhook(
        "https://bots.example.com/tg/t1", secret_token="s3cret-Token_1", allowed_updates=["message", "callback_query"]
    )
    info = await bot.get_webhook_info()
    assert info.url == "https://bots.example.com/tg/t1"
    assert info.allowed_updates == ("message", "callback_query")
    assert telegram.webhook(TOKEN)["secret_token"] == "s3cret-Token_1"

    telegram.push_text(TOKEN, CHAT, "queued")
    assert (await bot.get_webhook_info()).pending_update_count == 1
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()

    with pytest.raises(BadRequest, match="an https url must be provided"):
        await bot.set_webhook("http://bots.example.com/hook")
    with pytest.raises(BadRequest, match="unallowed characters"):
        await bot.set_webhook("https://bots.example.com/hook", secret_token="no spaces!")

    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates() == ()


async def test_set_webhook_terminates_a_pending_long_poll(telegram: FakeTelegramAPI, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=2))
    await asyncio.sleep(0.1)
    await bot.set_webhook("https://bots.example.com/hook")
    with pytest.raises(Conflict, match="terminated by setWebhook request"):
        await poll


async def test_deliver_webhook_posts_updates_with_the_secret_header(telegram: FakeTelegramAPI) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from tests.fakes import FakeServer

    received: list[tuple[str | None, dict[str, object]]] = []

    async def hook(request: Request) -> Response:
        received.append((request.headers.get("x-telegram-bot-api-secret-token"), await request.json()))
        return Response(status_code=200 if len(received) == 1 else 500)

    telegram.register_bot(TOKEN)
    telegram.allow_http_webhooks = True
    try:
        with FakeServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
            async with Bot(TOKEN, base_url=telegram.api_base_url) as bot:
                await bot.set_webhook(f"{receiver.base_url}/hook", secret_token="abc")
                telegram.push_text(TOKEN, CHAT, "one")
                telegram.push_text(TOKEN, CHAT, "two")
                assert await telegram.deliver_webhook(TOKEN) == [200, 500]
                info = await bot.get_webhook_info()
    finally:
        telegram.allow_http_webhooks = False
    assert [secret for secret, _ in received] == ["abc", "abc"]
    assert info.pending_update_count == 1  # the 500 left "two" queued
    assert info.last_error_message == "Wrong response from the webhook: 500"


# ptb itself reads RetryAfter.retry_after as an int while building the message; that's its deprecation, not ours.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_injected_429_surfaces_as_retry_after(telegram: FakeTelegramAPI, bot: Bot) -> None:
    telegram.inject_retry_after(TOKEN, 7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(CHAT, "hi")
    assert caught.value._retry_after == dtm.timedelta(seconds=7)
    assert "Retry in 7" in str(caught.value)
    await bot.send_message(CHAT, "hi again")  # one-shot
    assert telegram.sent_texts(TOKEN) == ["hi again"]
    assert [c.status for c in telegram.calls(TOKEN, "sendMessage")] == [429, 200]


async def test_blocked_chat_is_forbidden(telegram: FakeTelegramAPI, bot: Bot) -> None:
    telegram.block_chat(TOKEN, CHAT)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(CHAT, "hi")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(CHAT, "typing")
    await bot.send_message(CHAT + 1, "someone else")


async def test_html_is_validated_like_the_real_api(telegram: FakeTelegramAPI, bot: Bot) -> None:
    with pytest.raises(BadRequest, match='Can\'t parse entities: unsupported start tag "br" at byte offset 5'):
        await bot.send_message(CHAT, "Hello<br>world", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="Can't parse entities: can't find end tag corresponding to start tag"):
        await bot.send_message(CHAT, "<b>bold", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(CHAT, "<b> </b>", parse_mode=ParseMode.HTML)

    message = await bot.send_message(
        CHAT, '<b>Price</b> &lt;10 <a href="https://ex.com">link</a> 👍<i>ok</i>', parse_mode=ParseMode.HTML
    )
    assert message.text == "Price <10 link 👍ok"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [
        ("bold", 0, 5),
        ("text_link", 10, 4),
        ("italic", 17, 2),  # the emoji is two UTF-16 units
    ]
    await bot.send_message(CHAT, "x" * 4096)


def test_parse_html_errors_match_the_real_wording() -> None:
    assert parse_html('<pre><code class="language-python">x = 1</code></pre>')[1] == [
        {"offset": 0, "length": 5, "type": "pre", "language": "python"}
    ]
    assert parse_html("a &nbsp; &#65; &#x42;")[0] == "a &nbsp; A B"
    for text, error in [
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<ul><li>x</li></ul>", 'Unsupported start tag "ul" at byte offset 0'),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ]:
        with pytest.raises(ValueError, match=error):
            parse_html(text)


async def test_unknown_or_malformed_token_is_invalid(telegram: FakeTelegramAPI) -> None:
    with pytest.raises(InvalidToken, match="was rejected by the server"):
        async with Bot(OTHER_TOKEN, base_url=telegram.api_base_url):
            pass
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{telegram.api_base_url}{OTHER_TOKEN}/getMe")
        assert response.status_code == 401
        assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        response = await client.get(f"{telegram.api_base_url}not-a-token/getMe")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_each_token_has_its_own_identity_and_queue(telegram: FakeTelegramAPI) -> None:
    telegram.register_bot(TOKEN, username="first_bot")
    telegram.register_bot(OTHER_TOKEN, username="second_bot")
    telegram.push_text(OTHER_TOKEN, CHAT, "for the second bot")
    async with (
        Bot(TOKEN, base_url=telegram.api_base_url) as first,
        Bot(OTHER_TOKEN, base_url=telegram.api_base_url) as second,
    ):
        assert (first.username, first.id) == ("first_bot", 424242)
        assert (second.username, second.id) == ("second_bot", 515151)
        assert await first.get_updates() == ()
        assert len(await second.get_updates()) == 1
        await first.send_message(CHAT, "from first")
    assert telegram.sent_texts(OTHER_TOKEN) == []
    assert telegram.sent_texts(TOKEN) == ["from first"]


async def test_json_and_get_requests_are_accepted(telegram: FakeTelegramAPI) -> None:
    telegram.register_bot(TOKEN)
    url = f"{telegram.api_base_url}{TOKEN}"
    async with httpx.AsyncClient() as client:
        sent = (await client.post(f"{url}/sendMessage", json={"chat_id": CHAT, "text": "123"})).json()
        assert sent["ok"] and sent["result"]["text"] == "123"  # a numeric-looking text stays a string
        me = (await client.get(f"{url}/getMe")).json()
        assert me["result"]["is_bot"] is True
        unknown = await client.post(f"{url}/noSuchMethod")
        assert unknown.status_code == 404


async def test_pushed_update_kinds_parse_in_ptb(telegram: FakeTelegramAPI, bot: Bot) -> None:
    first = telegram.push_text(TOKEN, CHAT, "original")
    telegram.push_edited_text(TOKEN, CHAT, first["message"]["message_id"], "edited")
    telegram.push_group_text(TOKEN, -100123, "what are your hours?")
    telegram.push_command(TOKEN, -100123, "help", "now")
    telegram.push_photo(TOKEN, CHAT, caption="look")

    updates = await bot.get_updates()
    edited, group, command, photo = updates[1:]
    assert edited.edited_message is not None and edited.edited_message.text == "edited"
    assert group.message is not None and group.message.chat.type == "supergroup"
    assert group.message.text == "@shop_bot what are your hours?"
    assert group.message.parse_entities() == {group.message.entities[0]: "@shop_bot"}
    assert command.message is not None and command.message.text == "/help@shop_bot now"
    assert command.message.entities[0].type == "bot_command"
    assert photo.message is not None and photo.message.caption == "look"
    file = await photo.message.photo[-1].get_file()
    assert bytes(await file.download_as_bytearray()).startswith(b"\xff\xd8")


async def test_callback_query_edit_and_answer(telegram: FakeTelegramAPI, bot: Bot) -> None:
    message = await bot.send_message(CHAT, "Pick one")
    telegram.push_callback_query(TOKEN, CHAT, "plan:pro")
    (update,) = await bot.get_updates()
    assert update.callback_query is not None and update.callback_query.data == "plan:pro"
    assert await update.callback_query.answer("Saved")
    with pytest.raises(BadRequest, match="Query is too old"):
        await update.callback_query.answer("twice")

    edited = await bot.edit_message_text("Pro it is", chat_id=CHAT, message_id=message.message_id)
    assert isinstance(edited, type(message)) and edited.text == "Pro it is"
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("Pro it is", chat_id=CHAT, message_id=message.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=999)
    assert telegram.sent_messages(TOKEN, CHAT)[0].edits[0][1] == "Pro it is"
    assert telegram.answered_callbacks(TOKEN)[0]["text"] == "Saved"


async def test_commands_per_language_and_chat_actions(telegram: FakeTelegramAPI, bot: Bot) -> None:
    await bot.set_my_commands([("start", "Start"), ("help", "Help")])
    await bot.set_my_commands([("start", "Boshlash")], language_code="uz")
    assert [c["command"] for c in telegram.commands(TOKEN)] == ["start", "help"]
    assert telegram.commands(TOKEN, language_code="uz") == [{"command": "start", "description": "Boshlash"}]
    assert [c.description for c in await bot.get_my_commands(language_code="uz")] == ["Boshlash"]
    with pytest.raises(BadRequest):
        await bot.set_my_commands([("Bad Command", "x")])

    await bot.send_chat_action(CHAT, "typing")
    assert [a.action for a in telegram.chat_actions(TOKEN, CHAT)] == ["typing"]
    with pytest.raises(BadRequest, match="Wrong parameter action"):
        await bot.send_chat_action(CHAT, "dancing")


async def test_send_timestamps_support_rate_limit_assertions(telegram: FakeTelegramAPI, bot: Bot) -> None:
    for i in range(3):
        await bot.send_message(CHAT, f"burst {i}")
    await bot.send_message(CHAT + 1, "other chat")
    assert telegram.max_sends_in_window(TOKEN, chat_id=CHAT) == 3
    assert telegram.max_sends_in_window(TOKEN) == 4
    assert telegram.max_sends_in_window(TOKEN, chat_id=CHAT + 1) == 1
