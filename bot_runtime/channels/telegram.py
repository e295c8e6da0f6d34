"""Telegram inside the tenant runtime: one python-telegram-bot ``Application`` per connected bot, fed from the stream.

Updates never reach ptb through its own Updater. They arrive as ``telegram.update`` entries on the tenant's inbound
stream (XADDed by the control plane's webhook endpoint or by our :mod:`~bot_runtime.channels.poller`), and the
runtime core hands each entry to :func:`handle_update`, which runs ``Application.process_update`` on it. The
Applications are built with ``updater(None)`` and ``base_url = TELEGRAM_API_BASE_URL + "/bot"``; their tokens come
from the tenant's config document, decrypted with RUNTIME_SECRET_KEY, and live only in this process's memory.

Behaviour: /start greets with the bot's welcome message, /help explains, text is answered in the customer's language
(Telegram's ``language_code`` when the text is too short to tell), groups get answers only when the bot is
mentioned, replied to or commanded, edited messages are answered like new ones, other message types get a polite
"text only" reply. Over the plan's daily limit a chat gets one notice a day and nothing else. Answers are sent as
HTML with everything escaped (a little Markdown from models is turned into <b>/<code>), split on paragraph or
sentence boundaries when longer than 4096 characters, through the bot's :class:`~bot_runtime.channels.limiter.
BotLimiter`, with a typing indicator while the answer is being made. A 403 ("blocked by the user") emits
``chat.unreachable``. Every handled message emits ``message.in`` and ``message.out`` RuntimeEvents.

Polling-mode bots are polled from here while the runtime runs; when it goes idle their pollers stop (an idle hook)
and the host agent's idle poller (bot_runtime.host.pollers) long-polls them until the next update wakes the runtime.

This module registers itself with the runtime core on import (see the bottom) and never imports the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import html
import logging
import os
import re
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from telegram import Bot, Message, MessageEntity, ReplyParameters, Update
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot_runtime import contract
from bot_runtime.answering.tenant import TenantAnswerer, close_shared_answerer, shared_answerer
from bot_runtime.channels import TELEGRAM_MAX_MESSAGE_CHARS, detect_language, message_out_data
from bot_runtime.channels.limiter import BotLimiter
from bot_runtime.channels.poller import (
    UPDATE_KIND,
    TelegramPoller,
    TokenRejected,
    api_base_url,
    bot_mode,
    poll_timeout_from_env,
)
from bot_runtime.crypto import SecretKeyError, decrypt_json
from bot_runtime.i18n import gettext as _
from bot_runtime.i18n import normalize_locale, use_locale
from bot_runtime.ratelimit import LIMIT_NOTICE, RATE_NOTICE, check_chat_rate
from bot_runtime.runtime import (
    HandlerContext,
    Runtime,
    register_config_listener,
    register_handler,
    register_idle_hook,
    register_shutdown,
)

if TYPE_CHECKING:
    from bot_runtime.answering.schemas import AnswerResult, Turn

log = logging.getLogger("bot_runtime.telegram")

CHANNEL = "telegram"
TYPING_EVERY_SECONDS = 4.0  # the "typing…" status lasts ≤ 5 s
TYPING_AFTER_SECONDS = 0.3  # answers quicker than this show no "typing…" at all
HISTORY_TURNS = 6
HISTORY_CHATS = 2000
INIT_TIMEOUT_SECONDS = 15.0
QUIESCE_SLACK_SECONDS = 5.0

_GROUP_TYPES = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
_MESSAGES = filters.UpdateType.MESSAGE | filters.UpdateType.EDITED_MESSAGE


# ---------------------------------------------------------------------------------------------------------------------
# Text: splitting long answers and rendering them as safe Telegram HTML


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def _prefix_within(text: str, limit: int) -> int:
    """The longest prefix length (in code points) whose UTF-16 length is ≤ ``limit``."""
    if utf16_len(text) <= limit:
        return len(text)
    low, high = 0, min(len(text), limit)
    while low < high:
        middle = (low + high + 1) // 2
        if utf16_len(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


_SENTENCE_END = re.compile(r"[.!?…。](?:[\"')\]»]*)\s")


def split_text(text: str, limit: int = TELEGRAM_MAX_MESSAGE_CHARS) -> list[str]:
    """Split ``text`` into pieces of ≤ ``limit`` characters, cutting at a paragraph, then a line, then a sentence,
    then a space, and only as a last resort in the middle of a word. Empty pieces are dropped."""
    pieces: list[str] = []
    rest = text.strip()
    while rest:
        fits = _prefix_within(rest, limit)
        if fits >= len(rest):
            pieces.append(rest)
            break
        window = rest[:fits]
        floor = fits // 2  # a cut in the first half would make needlessly many pieces
        cut = window.rfind("\n\n", floor)
        if cut <= 0:
            cut = window.rfind("\n", floor)
        if cut <= 0:
            ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() > floor]
            cut = ends[-1] if ends else -1
        if cut <= 0:
            cut = window.rfind(" ", floor)
        if cut <= 0:
            cut = fits
        piece = rest[:cut].strip()
        if piece:
            pieces.append(piece)
        rest = rest[cut:].strip()
    return pieces


_CODE_SPAN = re.compile(r"```(?:[A-Za-z0-9_+-]*\n)?(.+?)```|`([^`\n]+)`", re.DOTALL)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")


def to_html(text: str) -> str:
    """Escape ``text`` for Telegram's HTML mode, then turn the Markdown models like to emit (**bold**, `code`,
    fenced blocks) into the matching tags. Everything else, including any HTML in the text, arrives as literal text.

    Code spans are cut out first so that bold never nests inside (or straddles) code, which Telegram rejects.
    """
    out: list[str] = []
    position = 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_bold(html.escape(text[position : match.start()], quote=False)))
        block, inline = match.group(1), match.group(2)
        if block is not None:
            out.append(f"<pre>{html.escape(block.strip(), quote=False)}</pre>")
        else:
            out.append(f"<code>{html.escape(inline, quote=False)}</code>")
        position = match.end()
    out.append(_bold(html.escape(text[position:], quote=False)))
    return "".join(out)


def _bold(escaped: str) -> str:
    return _BOLD.sub(lambda m: f"<b>{m.group(1)}</b>", escaped)


def render_parts(text: str) -> list[tuple[str, str]]:
    """``(plain, html)`` per message: split on the plain text (markup only ever shortens what Telegram counts)."""
    return [(piece, to_html(piece)) for piece in split_text(text)]


# ---------------------------------------------------------------------------------------------------------------------
# Answering


@dataclass(frozen=True, slots=True)
class Question:
    """What a Telegram message asks, with everything an answer function may need."""

    tenant: contract.TenantConfig
    bot: contract.BotConfig
    text: str
    language: str  # detected from the text, else Telegram's language_code, else the bot's language
    language_hint: str | None  # Telegram's language_code (normalised), for engines that detect on their own
    history: tuple[Turn, ...] = ()


AnswerFn = Callable[[Question], Awaitable["AnswerResult"]]


class EngineAnswer:
    """The default answer function: the runtime's shared answerer (guardrails, retrieval over the bot's published
    knowledge artifact, the tenant's model provider when its config carries a key, else the offline answerer), so a
    Telegram customer gets the same answer as a widget visitor, from the same in-memory index."""

    def __init__(self, answerer: TenantAnswerer | None = None, *, redis_url: Callable[[], str | None] = lambda: None):
        self._answerer = answerer
        self._redis_url = redis_url

    @property
    def _tenant(self) -> TenantAnswerer:
        return self._answerer or shared_answerer(self._redis_url() or "")

    async def __call__(self, question: Question) -> AnswerResult:
        return await self._tenant.answer(
            question.tenant,
            question.bot,
            question.text,
            history=question.history,
            language_hint=question.language_hint,
        )


_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """The SSL context httpx would build for ``verify=True`` (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


def _turns(history: deque[tuple[str, str]]) -> tuple[Turn, ...]:
    from bot_runtime.answering.schemas import Turn

    return tuple(Turn(role=role, text=text) for role, text in history)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# Connected bots and the entry being processed


@dataclass(eq=False)
class ConnectedBot:
    """One bot's ptb Application, limiter and (in polling mode) poller."""

    bot_id: str
    token_digest: str  # to notice a changed token without keeping a second copy of it
    api_base_url: str
    mode: str
    app: Application  # type: ignore[type-arg]
    limiter: BotLimiter
    ready: bool = False
    dead: bool = False  # Telegram rejected the token: nothing to do until the config changes
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    poller: TelegramPoller | None = None
    poller_task: asyncio.Task[None] | None = None
    poller_stop: asyncio.Event | None = None

    @property
    def bot(self) -> Bot:
        return self.app.bot

    @property
    def polling(self) -> bool:
        return self.poller_task is not None and not self.poller_task.done()


@dataclass(eq=False)
class _Entry:
    """The inbound entry ptb's callbacks are working on (handed over through a context variable)."""

    ctx: HandlerContext
    connected: ConnectedBot
    bot: contract.BotConfig
    error: BaseException | None = None


_entry_var: contextvars.ContextVar[_Entry] = contextvars.ContextVar("telegram_entry")


class Delivery:
    SENT = "sent"
    BLOCKED = "blocked"
    FAILED = "failed"


# ---------------------------------------------------------------------------------------------------------------------
# The channel


class TelegramChannel:
    """All Telegram bots of one tenant runtime.

    ``answer`` answers a :class:`Question` (default :class:`EngineAnswer`); ``api_base_url`` overrides the bots'
    Bot API server (default: the channel's ``api_base_url`` setting, then $TELEGRAM_API_BASE_URL, then Telegram);
    ``secret_key`` overrides $RUNTIME_SECRET_KEY for decrypting credentials.
    """

    def __init__(
        self,
        *,
        answer: AnswerFn | None = None,
        api_base_url: str | None = None,
        secret_key: str | None = None,
        poll_timeout: float | None = None,
        limiter_factory: Callable[[], BotLimiter] = BotLimiter,
    ) -> None:
        self._answer: AnswerFn = answer or EngineAnswer(redis_url=lambda: self._redis_url)
        self._api_base_url = api_base_url
        self._secret_key = secret_key
        self._poll_timeout = poll_timeout_from_env() if poll_timeout is None else poll_timeout
        self._limiter_factory = limiter_factory
        self._bots: dict[str, ConnectedBot] = {}
        self._history: OrderedDict[tuple[str, int], deque[tuple[str, str]]] = OrderedDict()
        self._redis_url: str | None = None
        self._apply_lock = asyncio.Lock()
        self._typing_tasks: set[asyncio.Task[None]] = set()

    # -- configuration --------------------------------------------------------------------------------------------

    def set_answer_function(self, answer: AnswerFn) -> None:
        self._answer = answer

    @property
    def bots(self) -> dict[str, ConnectedBot]:
        return self._bots

    @property
    def polling(self) -> bool:
        """True while any of this tenant's bots is polled from here."""
        return any(connected.polling for connected in self._bots.values())

    async def apply_config(self, runtime: Runtime, config: contract.TenantConfig) -> None:
        """Build, rebuild or drop Applications and pollers so they match ``config`` (a config listener)."""
        self._redis_url = runtime.s.redis_url
        async with self._apply_lock:
            wanted: dict[str, contract.ChannelConfig] = {}
            for bot in config.bots:
                if not bot.is_enabled:
                    continue
                channel = next((c for c in bot.channels if c.kind == CHANNEL and c.credentials), None)
                if channel is not None:
                    wanted[bot.id] = channel
            for bot_id in [bot_id for bot_id in self._bots if bot_id not in wanted]:
                await self._drop(bot_id)
            for bot_id, channel in wanted.items():
                await self._apply_bot(runtime, config, bot_id, channel)

    async def _apply_bot(
        self, runtime: Runtime, config: contract.TenantConfig, bot_id: str, channel: contract.ChannelConfig
    ) -> None:
        try:
            token = str(decrypt_json(channel.credentials, key=self._secret_key).get("token") or "")
        except (SecretKeyError, ValueError):
            log.error("telegram.credentials.unreadable", extra={"tenant_id": config.tenant_id, "bot_id": bot_id})
            await self._drop(bot_id)
            return
        if not token:
            await self._drop(bot_id)
            return
        digest = hashlib.sha256(token.encode()).hexdigest()
        api_base_url = self._api_base(channel)
        mode = bot_mode(channel)
        connected = self._bots.get(bot_id)
        if connected is not None and (connected.token_digest, connected.api_base_url) != (digest, api_base_url):
            await self._drop(bot_id)
            connected = None
        if connected is None:
            connected = ConnectedBot(
                bot_id=bot_id,
                token_digest=digest,
                api_base_url=api_base_url,
                mode=mode,
                app=self._build_app(token, api_base_url),
                limiter=self._limiter_factory(),
            )
            self._bots[bot_id] = connected
            with contextlib.suppress(TelegramError, OSError, TimeoutError):
                # Early getMe so the username is known before the first group message; a network hiccup here is
                # retried lazily when the first update arrives.
                await asyncio.wait_for(self._ensure_ready(connected), INIT_TIMEOUT_SECONDS)
        connected.mode = mode
        if mode == "polling" and not connected.dead:
            self._start_poller(runtime, config.tenant_id, connected)
        else:
            await self._stop_poller(connected)

    def _api_base(self, channel: contract.ChannelConfig) -> str:
        return self._api_base_url.rstrip("/") if self._api_base_url else api_base_url(channel)

    def _build_app(self, token: str, api_base_url: str) -> Application:  # type: ignore[type-arg]
        # ptb's defaults (pool sizes 256 / 1, default timeouts), except that every client of every bot in this
        # process verifies TLS with one SSL context: each context holds its own copy of the CA bundle.
        httpx_kwargs = {"verify": _shared_ssl_context()}
        app = (
            ApplicationBuilder()
            .token(token)
            .request(HTTPXRequest(connection_pool_size=256, httpx_kwargs=httpx_kwargs))
            .get_updates_request(HTTPXRequest(connection_pool_size=1, httpx_kwargs=httpx_kwargs))
            .base_url(f"{api_base_url}/bot")
            .base_file_url(f"{api_base_url}/file/bot")
            .updater(None)  # we feed updates ourselves, from the stream
            .job_queue(None)
            .build()
        )
        app.add_handler(CommandHandler("start", self._on_start, filters=_MESSAGES))
        app.add_handler(CommandHandler("help", self._on_help, filters=_MESSAGES))
        app.add_handler(MessageHandler(_MESSAGES & filters.COMMAND, self._on_other_command))
        app.add_handler(MessageHandler(_MESSAGES & filters.TEXT, self._on_text))
        app.add_handler(MessageHandler(_MESSAGES & ~filters.TEXT & ~filters.StatusUpdate.ALL, self._on_unsupported))
        app.add_handler(CallbackQueryHandler(self._on_callback_query))
        app.add_handler(ChatMemberHandler(self._on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self._on_error)
        return app

    async def _ensure_ready(self, connected: ConnectedBot) -> bool:
        """Initialize the Application once (getMe); False when Telegram rejects the token."""
        if connected.ready or connected.dead:
            return connected.ready
        async with connected.lock:
            if connected.ready or connected.dead:
                return connected.ready
            try:
                await connected.app.initialize()
            except InvalidToken:
                connected.dead = True
                log.error("telegram.token.rejected", extra={"bot_id": connected.bot_id})
                await self._stop_poller(connected)
                return False
            connected.ready = True
            return True

    def _start_poller(self, runtime: Runtime, tenant_id: str, connected: ConnectedBot) -> None:
        if connected.polling:
            return
        connected.poller = TelegramPoller(
            connected.bot,
            tenant_id=tenant_id,
            bot_id=connected.bot_id,
            redis=runtime.redis,
            timeout=self._poll_timeout,
            owner=f"runtime:{runtime.s.host_id}:{os.getpid()}",
        )
        connected.poller_stop = asyncio.Event()
        task = asyncio.create_task(
            connected.poller.run(connected.poller_stop), name=f"telegram-poller {connected.bot_id}"
        )
        task.add_done_callback(lambda t: self._poller_done(connected, t))
        connected.poller_task = task

    def _poller_done(self, connected: ConnectedBot, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, TokenRejected):
            connected.dead = True
        elif exc is not None:
            log.error("telegram.poller.failed", exc_info=exc, extra={"bot_id": connected.bot_id})

    async def _stop_poller(self, connected: ConnectedBot) -> None:
        task, connected.poller_task = connected.poller_task, None
        if task is None:
            return
        if connected.poller_stop is not None:
            connected.poller_stop.set()
        # A long poll in flight is abandoned: its updates are unconfirmed, so nothing is lost, and the poller keeps
        # the bot's poll lock until that poll would have ended, so nobody polls over it.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def quiesce(self) -> None:
        """Stop every poller before the runtime goes idle (an idle hook): a long poll in flight may finish first
        (within the poll timeout), so what it brings is queued before the runtime's last look at its stream.
        The host's poller then long-polls the bots while the runtime is idle (see bot_runtime.host.pollers)."""
        polling = [connected for connected in self._bots.values() if connected.polling]
        for connected in polling:
            if connected.poller_stop is not None:
                connected.poller_stop.set()
        tasks = [connected.poller_task for connected in polling if connected.poller_task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self._poll_timeout + QUIESCE_SLACK_SECONDS)
        for connected in polling:
            await self._stop_poller(connected)  # cancels one still stuck (its lock then outlives its poll)

    async def _drop(self, bot_id: str) -> None:
        connected = self._bots.pop(bot_id, None)
        if connected is None:
            return
        await self._stop_poller(connected)
        with contextlib.suppress(Exception):
            if connected.ready:
                await connected.app.shutdown()
            else:
                await connected.bot.shutdown()  # getMe failed after the HTTP clients were opened
        self._history = OrderedDict((key, turns) for key, turns in self._history.items() if key[0] != bot_id)

    async def aclose(self) -> None:
        """Stop pollers and close every Application's HTTP clients (a shutdown hook)."""
        for task in list(self._typing_tasks):
            task.cancel()
        for bot_id in list(self._bots):
            await self._drop(bot_id)
        await close_shared_answerer()

    # -- the handler ----------------------------------------------------------------------------------------------

    async def handle(self, ctx: HandlerContext) -> None:
        """Process one ``telegram.update`` entry. Raises (so the core retries) only on transient trouble."""
        event = ctx.event
        bot = ctx.bot
        if bot is None or not bot.is_enabled:
            # Disconnected, disabled or deleted after the update was queued: acknowledged without an answer.
            log.info("telegram.update.dropped", extra={"bot_id": event.bot_id, "event_id": event.event_id})
            return
        connected = self._bots.get(event.bot_id)
        if connected is None and any(c.kind == CHANNEL for c in bot.channels):
            await self.apply_config(ctx.runtime, ctx.config)  # this module was imported after the config was applied
            connected = self._bots.get(event.bot_id)
        if connected is None:
            log.info("telegram.update.dropped", extra={"bot_id": event.bot_id, "event_id": event.event_id})
            return
        if not await self._ensure_ready(connected):
            ctx.emit("runtime.error", channel=CHANNEL, data={"error": "telegram rejected the bot token"})
            return
        try:
            update = Update.de_json(event.payload, connected.bot)
        except Exception:  # a malformed entry does not get better with retries
            log.warning("telegram.update.malformed", exc_info=True, extra={"event_id": event.event_id})
            return
        entry = _Entry(ctx=ctx, connected=connected, bot=bot)
        token = _entry_var.set(entry)
        try:
            await connected.app.process_update(update)
        finally:
            _entry_var.reset(token)
        if entry.error is not None:
            raise entry.error

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # ptb swallows handler exceptions after calling the error handlers; hand them back to handle() instead, so
        # the runtime core retries the entry (or records a reply that already went out).
        entry = _entry_var.get(None)
        if entry is not None and context.error is not None:
            entry.error = context.error
        else:
            log.error("telegram.handler.failed", exc_info=context.error)

    # -- ptb callbacks --------------------------------------------------------------------------------------------

    async def _on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        entry = _entry_var.get()
        message = update.effective_message
        if message is None:
            return
        language = self._user_language(update, entry.bot)
        if not await self._admit(entry, update, language, kind="command"):
            return
        with use_locale(language):
            text = entry.bot.welcome_message.strip() or _(
                "Hello! I am the assistant of %(name)s. Ask me anything about it and I will answer right away.",
                name=entry.bot.name,
            )
        await self._reply(entry, update, text, language=language)

    async def _on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        entry = _entry_var.get()
        language = self._user_language(update, entry.bot)
        if not await self._admit(entry, update, language, kind="command"):
            return
        await self._reply(entry, update, self._help_text(entry.bot, language), language=language)

    async def _on_other_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        entry = _entry_var.get()
        message = update.effective_message
        if message is None or not self._addressed(entry.connected, message):
            return  # e.g. "/start@some_other_bot" in a group
        language = self._user_language(update, entry.bot)
        if not await self._admit(entry, update, language, kind="command"):
            return
        await self._reply(entry, update, self._help_text(entry.bot, language), language=language)

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        entry = _entry_var.get()
        message = update.effective_message
        if message is None or not message.text or not self._addressed(entry.connected, message):
            return
        question = self._without_mention(entry.connected, message.text)
        hint = self._language_code(update)
        language = detect_language(question or message.text, hint, entry.bot.language)
        if not await self._admit(entry, update, language, kind="text", text=question):
            return
        if not question:
            await self._reply(entry, update, self._help_text(entry.bot, language), language=language)
            return
        chat_id = message.chat_id
        history_key = (entry.bot.id, chat_id)
        history = self._history.get(history_key) or deque(maxlen=HISTORY_TURNS)
        started = time.monotonic()
        async with self._typing(entry.connected, chat_id):
            result = await self._answer(
                Question(
                    tenant=entry.ctx.config,
                    bot=entry.bot,
                    text=question,
                    language=language,
                    language_hint=hint,
                    history=_turns(history) if history else (),
                )
            )
        answer_ms = round((time.monotonic() - started) * 1000)
        delivery = await self._reply(
            entry, update, result.text, language=result.language or language, answer=result, question=question
        )
        if delivery == Delivery.SENT:
            history.append(("user", question))
            history.append(("assistant", result.text))
            self._remember(history_key, history)
        log.info(
            "telegram.answered",
            extra={"bot_id": entry.bot.id, "answer_ms": answer_ms, "provider": result.provider, "delivery": delivery},
        )

    async def _on_unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        entry = _entry_var.get()
        message = update.effective_message
        if message is None or not self._addressed(entry.connected, message):
            return
        language = self._user_language(update, entry.bot)
        if not await self._admit(entry, update, language, kind=_message_kind(message)):
            return
        with use_locale(language):
            text = _("Sorry, I can only read text messages for now. Please type your question and I will answer.")
        await self._reply(entry, update, text, language=language)

    async def _on_callback_query(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        # We send no inline keyboards today; answering stops the spinner on an old button someone pressed.
        if update.callback_query is not None:
            with contextlib.suppress(TelegramError):
                await update.callback_query.answer()

    async def _on_my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        entry = _entry_var.get()
        change = update.my_chat_member
        if change is None:
            return
        if change.chat.type == ChatType.PRIVATE and change.new_chat_member.status == ChatMemberStatus.BANNED:
            self._unreachable(entry, update, "blocked by the user")

    # -- pieces ---------------------------------------------------------------------------------------------------

    async def _admit(self, entry: _Entry, update: Update, language: str, *, kind: str, text: str | None = None) -> bool:
        """Count the message against the plan's daily limit and record it; over the limit, send the day's notice
        (once per chat) and nothing else."""
        ctx = entry.ctx
        message = update.effective_message
        assert message is not None
        rate = await check_chat_rate(
            ctx.redis, ctx.tenant_id, entry.bot.id, CHANNEL, str(message.chat_id), event_id=ctx.event.event_id
        )
        allowed = rate.allowed and await ctx.count_message()
        data: dict[str, Any] = {
            "text": text if text is not None else (message.text or message.caption or ""),
            "message_id": message.message_id,
            "type": kind,
            "edited": update.edited_message is not None,
            "language": language,
        }
        if not rate.allowed:
            data["rate_limited"] = True
        elif not allowed:
            data["over_limit"] = True
        ctx.emit("message.in", channel=CHANNEL, chat=_chat_info(update), data=data)
        if allowed:
            return True
        if not rate.allowed:
            if rate.notice:  # once per window, then nothing until it ends
                with use_locale(language):
                    notice = _(RATE_NOTICE, seconds=rate.retry_after)
                await self._reply(entry, update, notice, language=language)
            return False
        chat_key = f"tg:{entry.bot.id}:{message.chat_id}"
        if await ctx.runtime.should_send_limit_notice(ctx.config, chat_key):
            with use_locale(language):
                notice = _(LIMIT_NOTICE)
            await self._reply(entry, update, notice, language=language, limit_notice=True)
        return False

    async def _reply(
        self,
        entry: _Entry,
        update: Update,
        text: str,
        *,
        language: str,
        answer: AnswerResult | None = None,
        limit_notice: bool = False,
        question: str = "",
    ) -> str:
        """Send ``text`` (escaped, split) to the update's chat and emit ``message.out``. Returns the delivery."""
        message = update.effective_message
        assert message is not None
        # In groups the answer quotes the question, so everybody sees whom it answers.
        reply_to = message.message_id if message.chat.type in _GROUP_TYPES else None
        delivery, parts = await self._send_text(entry, update, message.chat_id, text, reply_to=reply_to)
        data = message_out_data(
            text,
            received_at=entry.ctx.event.received_at,
            delivery=delivery,
            parts=parts,
            language=language,
            reply_to=message.message_id,
            answer=answer,
        )
        if limit_notice:
            data["limit_notice"] = True
        if answer is not None and answer.blocked:
            data.update(contract.blocked_fields(answer.blocked, answer.provider, question))
        entry.ctx.emit("message.out", channel=CHANNEL, chat=_chat_info(update), data=data)
        return delivery

    async def _send_text(
        self, entry: _Entry, update: Update, chat_id: int, text: str, *, reply_to: int | None
    ) -> tuple[str, int]:
        """Send all parts (lease checked first, ``sent`` marked after). Returns (delivery, parts sent)."""
        ctx = entry.ctx
        await ctx.ensure_lease()
        sent = 0
        try:
            for plain, markup in render_parts(text):
                await self.send_part(entry.connected, chat_id, plain, markup, reply_to=reply_to if sent == 0 else None)
                sent += 1
        except Forbidden as exc:
            self._unreachable(entry, update, exc.message)
            if sent:
                await ctx.mark_sent()
            return Delivery.BLOCKED, sent
        except BaseException:
            if sent:
                # Part of the answer is out: record it, so a retry does not send those parts twice.
                await ctx.mark_sent()
            raise
        await ctx.mark_sent()
        return Delivery.SENT, sent

    async def send_part(
        self, connected: ConnectedBot, chat_id: int | str, plain: str, markup: str, *, reply_to: int | None = None
    ) -> Message:
        """One message through the bot's limiter, as HTML; as plain text if Telegram cannot parse the HTML."""
        bot = connected.bot
        reply = ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None
        try:
            return await connected.limiter.run(
                chat_id, lambda: bot.send_message(chat_id, markup, parse_mode=ParseMode.HTML, reply_parameters=reply)
            )
        except BadRequest as exc:
            if "can't parse entities" not in exc.message.lower():
                raise
            log.warning("telegram.html.rejected", extra={"bot_id": connected.bot_id, "error": exc.message})
            return await connected.limiter.run(
                chat_id, lambda: bot.send_message(chat_id, plain, reply_parameters=reply)
            )

    async def send_text(self, bot_id: str, chat_id: int | str, text: str) -> str:
        """Send plain ``text`` (escaped and split here) through the bot's shared limiter, e.g. a broadcast.

        Returns the delivery: ``sent``, ``blocked`` (403: the chat is unreachable) or ``failed`` (the bot is not
        connected here, or its token is dead). Network trouble raises. The caller checks the lease first.
        """
        connected = self._bots.get(bot_id)
        if connected is None or not await self._ensure_ready(connected):
            return Delivery.FAILED
        try:
            for plain, markup in render_parts(text):
                await self.send_part(connected, chat_id, plain, markup)
        except Forbidden:
            return Delivery.BLOCKED
        return Delivery.SENT

    async def send_html(self, bot_id: str, chat_id: int | str, markup: str) -> str:
        """Send one message of trusted HTML in Telegram's subset (≤ 4096 characters once parsed), e.g. a broadcast
        an owner composed, through the bot's shared limiter. Same deliveries as :meth:`send_text`; if Telegram
        cannot parse the HTML, the text is sent without its tags."""
        connected = self._bots.get(bot_id)
        if connected is None or not await self._ensure_ready(connected):
            return Delivery.FAILED
        plain = html.unescape(re.sub(r"<[^>]+>", "", markup))
        try:
            await self.send_part(connected, chat_id, plain, markup)
        except Forbidden:
            return Delivery.BLOCKED
        return Delivery.SENT

    @contextlib.asynccontextmanager
    async def _typing(self, connected: ConnectedBot, chat_id: int) -> AsyncIterator[None]:
        """Show "typing…" while the block runs longer than ``TYPING_AFTER_SECONDS`` (repeated, since the status
        fades after ~5 s). Best effort.

        A quick answer shows none: the reply itself is the feedback, and an action request would only compete with
        it. The block's end never waits on an action: one in flight is left to finish by itself (cancelling it would
        cost ptb its pooled connection), the timer is simply cancelled.
        """
        done = False
        sending = False

        async def keep_typing() -> None:
            nonlocal sending
            await asyncio.sleep(TYPING_AFTER_SECONDS)
            while not done:
                sending = True
                try:
                    with contextlib.suppress(TelegramError, OSError):
                        await connected.bot.send_chat_action(chat_id, ChatAction.TYPING)
                finally:
                    sending = False
                if done:
                    return
                await asyncio.sleep(TYPING_EVERY_SECONDS)

        task = asyncio.create_task(keep_typing(), name=f"telegram-typing {chat_id}")
        try:
            yield
        finally:
            done = True
            if sending:
                self._typing_tasks.add(task)  # a strong reference until its request is over
                task.add_done_callback(self._typing_tasks.discard)
            else:
                task.cancel()

    def _unreachable(self, entry: _Entry, update: Update, reason: str) -> None:
        log.info("telegram.chat.unreachable", extra={"bot_id": entry.bot.id, "reason": reason})
        entry.ctx.emit("chat.unreachable", channel=CHANNEL, chat=_chat_info(update), data={"reason": reason})

    def _remember(self, key: tuple[str, int], history: deque[tuple[str, str]]) -> None:
        self._history[key] = history
        self._history.move_to_end(key)
        while len(self._history) > HISTORY_CHATS:
            self._history.popitem(last=False)

    @staticmethod
    def _language_code(update: Update) -> str | None:
        user = update.effective_user
        return normalize_locale(user.language_code) if user is not None else None

    def _user_language(self, update: Update, bot: contract.BotConfig) -> str:
        return self._language_code(update) or normalize_locale(bot.language) or "en"

    @staticmethod
    def _help_text(bot: contract.BotConfig, language: str) -> str:
        with use_locale(language):
            return _(
                "Ask me a question in your own words and I will answer from what %(name)s has taught me.\n\n"
                "In a group, mention me or reply to my message.\n\n"
                "/start – greeting\n/help – this help",
                name=bot.name,
            )

    @staticmethod
    def _addressed(connected: ConnectedBot, message: Message) -> bool:
        """Private chats always; groups only when the message mentions the bot, replies to it or commands it."""
        if message.chat.type not in _GROUP_TYPES:
            return True
        me = connected.bot
        username = (me.username or "").lower()
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
            return True
        entities = message.parse_entities() if message.text else message.parse_caption_entities()
        for entity, value in entities.items():
            if entity.type == MessageEntity.MENTION and value.lower() == f"@{username}":
                return True
            if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == me.id:
                return True
            if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
                command, _at, target = value.partition("@")
                if target.lower() == username or (not target and command in ("/start", "/help")):
                    return True
        return False

    @staticmethod
    def _without_mention(connected: ConnectedBot, text: str) -> str:
        username = connected.bot.username if connected.ready else None
        if username:
            text = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE)
        return re.sub(r"[ \t]+", " ", text).strip()


def _chat_info(update: Update) -> dict[str, Any]:
    chat, user = update.effective_chat, update.effective_user
    info: dict[str, Any] = {"external_id": str(chat.id) if chat else "", "type": chat.type if chat else ""}
    if chat is not None and chat.type == ChatType.PRIVATE:
        info["name"] = user.full_name if user else (chat.full_name or "")
    else:
        info["name"] = chat.title or "" if chat else ""
    info["username"] = (user.username or "") if user else ""
    info["language"] = (user.language_code or "") if user else ""
    if user is not None and chat is not None and user.id != chat.id:
        info["user_id"] = str(user.id)
    return info


def _message_kind(message: Message) -> str:
    for kind in ("photo", "sticker", "voice", "video", "video_note", "audio", "document", "animation", "location"):
        if getattr(message, kind, None):
            return kind
    return "other"


def order_key(event: contract.InboundEvent) -> str:
    """Entries of one chat are handled in order; different chats of a bot in parallel."""
    payload = event.payload
    for name in ("message", "edited_message", "my_chat_member"):
        part = payload.get(name)
        if isinstance(part, dict) and isinstance(part.get("chat"), dict):
            return f"{event.bot_id}:{part['chat'].get('id')}"
    query = payload.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("from"), dict):
        return f"{event.bot_id}:{query['from'].get('id')}"
    return event.bot_id


# ---------------------------------------------------------------------------------------------------------------------
# Registration with the runtime core (one channel object per runtime process)

_channel: TelegramChannel | None = None


def channel() -> TelegramChannel:
    """The process's Telegram channel, created on first use."""
    global _channel
    if _channel is None:
        _channel = TelegramChannel()
    return _channel


def set_answer_function(answer: AnswerFn) -> None:
    """Make the runtime's Telegram bots answer with ``answer`` (e.g. an engine with the tenant's model provider)."""
    channel().set_answer_function(answer)


async def handle_update(ctx: HandlerContext) -> None:
    """The runtime core's handler for ``telegram.update`` entries."""
    await channel().handle(ctx)


async def _on_config(runtime: Runtime, config: contract.TenantConfig) -> None:
    await channel().apply_config(runtime, config)


async def _on_shutdown(runtime: Runtime) -> None:
    if _channel is not None:
        await _channel.aclose()


async def _on_idle(runtime: Runtime) -> None:
    if _channel is not None:
        await _channel.quiesce()


register_handler(UPDATE_KIND, handle_update, order_key=order_key)
register_config_listener(_on_config)
register_shutdown(_on_shutdown)
# A polling tenant goes idle like any other: its pollers stop, and the host agent's poller long-polls its bots while
# it is idle and wakes it on the next update (bot_runtime.host.pollers).
register_idle_hook(_on_idle)
