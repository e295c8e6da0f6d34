"""A fake Telegram Bot API server, faithful to the wire protocol (see shared/protocols.md section 1).

It serves ``GET|POST /bot<TOKEN>/<method>`` with query, form, multipart or JSON parameters and the real
``{"ok": ..., "result"|"error_code"/"description"/"parameters"}`` envelope, for any number of bots, plus
``GET /file/bot<TOKEN>/<file_path>``. Tests drive it through Python methods (it runs in the test process)::

    tg = FakeTelegramAPI()
    with tg.serve():
        tg.register_bot(TOKEN, username="shop_bot")
        app = Application.builder().token(TOKEN).base_url(tg.api_base_url).base_file_url(tg.file_base_url).build()
        tg.push_text(TOKEN, chat_id=777, text="/start")
        ...
        assert tg.sent_messages(TOKEN, chat_id=777)[0].text == "Welcome!"

Error texts copy the real server's (tdlib/telegram-bot-api) where known. Not modelled: MarkdownV2 parsing (text is
accepted as is), automatic flood limits (inject 429s instead), media sending, inline mode, payments.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.server import FakeServer

__all__ = [
    "ApiCall",
    "ChatAction",
    "Draft",
    "FakeTelegramAPI",
    "HtmlParseError",
    "SentMessage",
    "make_token",
    "parse_html",
]

MAX_MESSAGE_LENGTH = 4096
# The real server holds a long poll up to the requested timeout; tests don't want to wait 30 s for anything.
LONG_POLL_CAP = 2.0
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# allowed_updates=[] (or never set) means "everything except these".
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
_TOKEN_RE = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]+$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_CONFLICT_OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
_CONFLICT_WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a "
    "current content and reply markup of the message"
)
# A 1x1 JPEG is enough for code that downloads a photo and passes the bytes on.
_TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a"
    "1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001000101011100ffc4001f00000105010101"
    "01010100000000000000000102030405060708090a0bffda0008010100003f00d2cf20ffd9"
)


def make_token(bot_id: int, secret: str = "TEST-token_0123456789abcdefghijklmno") -> str:
    """A well-formed bot token ``<bot_id>:<secret>``; the fake derives the bot's user id from the prefix."""
    return f"{bot_id}:{secret}"


# --------------------------------------------------------------------------------------------------------------------
# Records the tests read


@dataclass
class SentMessage:
    """One message a bot sent, as the chat would show it. ``at`` is ``time.monotonic()`` at acceptance."""

    token: str
    chat_id: int | str
    message_id: int
    text: str  # after entity parsing: what the user sees
    raw_text: str  # the ``text`` parameter as sent
    parse_mode: str | None
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    params: dict[str, Any]
    at: float
    date: int
    edits: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, new raw text)


@dataclass(frozen=True)
class ChatAction:
    token: str
    chat_id: int | str
    action: str
    at: float


@dataclass(frozen=True)
class Draft:
    """A ``sendMessageDraft`` call (streaming preview)."""

    token: str
    chat_id: int | str
    draft_id: int
    text: str
    at: float


@dataclass(frozen=True)
class ApiCall:
    """Every authenticated request, including failed ones; ``status`` is the HTTP status answered."""

    token: str
    method: str
    params: dict[str, Any]
    at: float
    status: int


# --------------------------------------------------------------------------------------------------------------------
# Errors and parameter decoding


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad_request(text: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {text}")


@dataclass(frozen=True)
class _Upload:
    filename: str | None
    content: bytes


class _Params:
    """Request parameters with the Bot API's typing rules.

    Query and form values arrive as strings (ptb sends strings raw and JSON-encodes everything else), JSON bodies
    arrive typed; each getter accepts both.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def get_str(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        raise _bad_request(f'field "{name}" must be of type String')

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise _bad_request(f'field "{name}" must be of type Integer')
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise _bad_request(f'field "{name}" must be of type Integer')

    def get_number(self, name: str, default: float) -> float:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad_request(f'field "{name}" must be of type Number') from None

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "false", "0"}:
            return value.lower() in {"true", "1"}
        raise _bad_request(f'field "{name}" must be of type Boolean')

    def get_json(self, name: str) -> Any:
        value = self.raw.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise _bad_request(f"can't parse {name} JSON object") from None

    def get_chat_id(self, name: str = "chat_id") -> int | str:
        value = self.raw.get(name)
        if value is None or value == "":
            raise _bad_request(f"{name} is empty")
        if isinstance(value, str) and value.startswith("@"):
            return value
        parsed = self.get_int(name)
        assert parsed is not None
        return parsed


async def _read_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = await request.body()
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise _bad_request("can't parse JSON encoded request parameters") from None
            if not isinstance(data, dict):
                raise _bad_request("JSON object expected as request parameters")
            params.update(data)
    elif content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.form()
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                params[key] = _Upload(value.filename, await value.read())
            else:
                params[key] = value
    return params


# --------------------------------------------------------------------------------------------------------------------
# HTML parse mode


class HtmlParseError(ValueError):
    """Raised by :func:`parse_html` with the real server's wording (after "Bad Request: can't parse entities: ")."""


_SIMPLE_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_SUPPORTED_TAGS = frozenset({*_SIMPLE_TAGS, "a", "span", "tg-emoji"})
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]+);")
_ATTR_RE = re.compile(r"""\s*([^\s=>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']*)))?""")


def _decode_entity(match: re.Match[str]) -> str | None:
    body = match.group(1)
    if body.startswith("#x"):
        return chr(int(body[2:], 16)) if int(body[2:], 16) < 0x110000 else None
    if body.startswith("#"):
        return chr(int(body[1:])) if int(body[1:]) < 0x110000 else None
    # Other named entities (&nbsp; ...) are left as literal text by the real parser.
    return _NAMED_ENTITIES.get(body)


def _unescape(value: str) -> str:
    return _ENTITY_RE.sub(lambda m: _decode_entity(m) or m.group(0), value)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _OpenTag:
    name: str
    offset: int  # UTF-16 offset in the output text
    attrs: dict[str, str]
    pre_language: str | None = None


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram's HTML subset into ``(plain_text, entities)`` (entity offsets in UTF-16 units, like the API).

    Rejects what the real server rejects: unsupported tags (``<br>``, ``<p>``, ``<ul>``...), unbalanced or misnested
    tags, and a bare ``<``.
    """
    out: list[str] = []
    out_len = 0  # UTF-16 length of "".join(out)
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)

    def byte_offset(pos: int) -> int:
        return len(text[:pos].encode())

    while i < n:
        char = text[i]
        if char == "&":
            match = _ENTITY_RE.match(text, i)
            decoded = _decode_entity(match) if match else None
            if match and decoded is not None:
                out.append(decoded)
                out_len += _utf16_len(decoded)
                i = match.end()
            else:
                out.append("&")
                out_len += 1
                i += 1
            continue
        if char != "<":
            out.append(char)
            out_len += _utf16_len(char)
            i += 1
            continue

        tag_pos = i
        if text.startswith("</", i):
            end = text.find(">", i)
            if end < 0:
                raise HtmlParseError(f"Unclosed end tag at byte offset {byte_offset(tag_pos)}")
            name = text[i + 2 : end].strip().lower()
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {byte_offset(tag_pos)}")
            open_tag = stack.pop()
            if name != open_tag.name:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {byte_offset(tag_pos)}, expected "</{open_tag.name}>", '
                    f'found "</{name}>"'
                )
            entity = _close_tag(open_tag, out_len, stack)
            if entity is not None:
                entities.append(entity)
            i = end + 1
            continue

        # Start tag: the name runs to the first space or '>', as in the real parser ("<br/>" is the tag "br/").
        j = i + 1
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        if j >= n:
            raise HtmlParseError(f"Unclosed start tag at byte offset {byte_offset(tag_pos)}")
        name = text[i + 1 : j].lower()
        if name not in _SUPPORTED_TAGS:
            raise HtmlParseError(f'Unsupported start tag "{name}" at byte offset {byte_offset(tag_pos)}')
        attrs: dict[str, str] = {}
        while True:
            while j < n and text[j].isspace():
                j += 1
            if j >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {byte_offset(tag_pos)}")
            if text[j] == ">":
                break
            match = _ATTR_RE.match(text, j)
            if match is None or match.end() == j:
                raise HtmlParseError(f'Empty attribute name in the tag "{name}" at byte offset {byte_offset(j)}')
            value = next((g for g in match.groups()[1:] if g is not None), "")
            attrs[match.group(1).lower()] = _unescape(value)
            j = match.end()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(tag_pos)}')
        if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise HtmlParseError(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {byte_offset(tag_pos)}')
        stack.append(_OpenTag(name=name, offset=out_len, attrs=attrs))
        i = j + 1

    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _close_tag(tag: _OpenTag, end: int, parents: list[_OpenTag]) -> dict[str, Any] | None:
    length = end - tag.offset
    if tag.name == "code" and parents and parents[-1].name == "pre":
        # <pre><code class="language-x"> is one pre entity carrying the language, not two entities.
        language = tag.attrs.get("class", "")
        if language.startswith("language-"):
            parents[-1].pre_language = language.removeprefix("language-")
            return None
    if length <= 0:
        return None
    entity: dict[str, Any] = {"offset": tag.offset, "length": length}
    if tag.name == "a":
        href = tag.attrs.get("href", "")
        user = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if user:
            entity.update(type="text_mention", user={"id": int(user.group(1)), "is_bot": False, "first_name": ""})
        elif href:
            entity.update(type="text_link", url=href)
        else:
            return None
    elif tag.name == "span":
        entity["type"] = "spoiler"
    elif tag.name == "tg-emoji":
        entity.update(type="custom_emoji", custom_emoji_id=tag.attrs["emoji-id"])
    elif tag.name == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    else:
        entity["type"] = _SIMPLE_TAGS[tag.name]
        if tag.name == "pre" and tag.pre_language:
            entity["language"] = tag.pre_language
    return entity


# --------------------------------------------------------------------------------------------------------------------
# Per-bot state


class _Poll:
    """A long-poll request waiting on the server loop; woken from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        self.conflict: str | None = None

    def wake(self, conflict: str | None = None) -> None:
        if conflict is not None:
            self.conflict = conflict
        with contextlib.suppress(RuntimeError):  # the server loop may already be closed
            self.loop.call_soon_threadsafe(self.event.set)


@dataclass
class _Injection:
    retry_after: int
    remaining: int
    methods: frozenset[str] | None


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes


@dataclass
class _Bot:
    token: str
    user: dict[str, Any]
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1
    poll: _Poll | None = None
    webhook_url: str = ""
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    ip_address: str | None = None
    has_custom_certificate: bool = False
    last_error_date: int | None = None
    last_error_message: str | None = None
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    blocked: set[int | str] = field(default_factory=set)
    injections: list[_Injection] = field(default_factory=list)
    chats: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    next_message_id: dict[int | str, int] = field(default_factory=dict)
    incoming: dict[tuple[int | str, int], dict[str, Any]] = field(default_factory=dict)
    callback_queries: set[str] = field(default_factory=set)
    files: dict[str, _File] = field(default_factory=dict)

    @property
    def short_user(self) -> dict[str, Any]:
        return {k: self.user[k] for k in ("id", "is_bot", "first_name", "username")}


def _update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


def _chat_for(chat_id: int | str, known: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    if chat_id in known:
        return known[chat_id]
    if isinstance(chat_id, int) and chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "User"}
    if str(chat_id).startswith("-100"):
        return {"id": chat_id, "type": "supergroup", "title": "Group"}
    return {"id": chat_id, "type": "group", "title": "Group"}


# --------------------------------------------------------------------------------------------------------------------
# The fake


class FakeTelegramAPI:
    """In-process fake of the Telegram Bot API for many bots at once. An ASGI app; thread-safe test hooks."""

    def __init__(self, *, allow_http_webhooks: bool = False, long_poll_cap: float = LONG_POLL_CAP) -> None:
        """``allow_http_webhooks`` mimics a ``--local`` Bot API server (http:// and any port) so a test can point
        the webhook at a loopback app; the cloud API accepts only https on ports 80, 88, 443 and 8443."""
        self.allow_http_webhooks = allow_http_webhooks
        self.long_poll_cap = long_poll_cap
        self._lock = threading.RLock()
        # Signalled on every send, so a test thread can wait for the bot's answer instead of sleeping.
        self._changed = threading.Condition(self._lock)
        self._bots: dict[str, _Bot] = {}
        self._sent: list[SentMessage] = []
        self._actions: list[ChatAction] = []
        self._drafts: list[Draft] = []
        self._calls: list[ApiCall] = []
        self._answered_callbacks: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._server: FakeServer | None = None
        self._methods: dict[str, Callable[[_Bot, _Params], Any]] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,  # async
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "sendchataction": self._send_chat_action,
            "sendmessagedraft": self._send_message_draft,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
        }
        self._app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._handle_method, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._handle_file, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    # ---- serving -----------------------------------------------------------------------------------------------

    def serve(self) -> FakeServer:
        """A :class:`FakeServer` for this fake; ``with tg.serve():`` starts it and sets :attr:`base_url`."""
        self._server = FakeServer(self)
        return self._server

    @property
    def base_url(self) -> str:
        if self._server is None or not self._server.running:
            raise RuntimeError("call serve() and enter it first")
        return self._server.base_url

    @property
    def api_base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)`` / ``Bot(base_url=...)``: ptb appends the token."""
        return f"{self.base_url}/bot"

    @property
    def file_base_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url(...)``."""
        return f"{self.base_url}/file/bot"

    # ---- bots --------------------------------------------------------------------------------------------------

    def register_bot(
        self,
        token: str,
        *,
        username: str | None = None,
        first_name: str | None = None,
        can_join_groups: bool = True,
        can_read_all_group_messages: bool = False,
    ) -> dict[str, Any]:
        """Make ``token`` valid and return the bot's ``User`` (what getMe answers). The id is the token's prefix."""
        match = _TOKEN_RE.match(token)
        if match is None:
            raise ValueError(f"malformed bot token {token!r}: expected '<digits>:<secret>'")
        bot_id = int(match.group(1))
        user = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name or f"Bot {bot_id}",
            "username": username or f"fake{bot_id}_bot",
            "can_join_groups": can_join_groups,
            "can_read_all_group_messages": can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        with self._lock:
            self._bots[token] = _Bot(token=token, user=user)
        return dict(user)

    def revoke_bot(self, token: str) -> None:
        """Forget a token: from now on it gets 401 Unauthorized, like a token revoked in @BotFather."""
        with self._lock:
            bot = self._bots.pop(token, None)
        if bot and bot.poll:
            bot.poll.wake()

    def reset(self) -> None:
        """Forget all bots, updates, records and injected failures (for a server shared by many tests)."""
        with self._lock:
            polls = [bot.poll for bot in self._bots.values() if bot.poll]
            self._bots.clear()
            self._sent.clear()
            self._actions.clear()
            self._drafts.clear()
            self._calls.clear()
            self._answered_callbacks.clear()
        for poll in polls:
            poll.wake()

    def _bot(self, token: str) -> _Bot:
        try:
            return self._bots[token]
        except KeyError:
            raise KeyError(f"bot {token!r} is not registered; call register_bot() first") from None

    # ---- failure injection -------------------------------------------------------------------------------------

    def inject_retry_after(
        self, token: str, retry_after: int = 1, *, times: int = 1, methods: Collection[str] | None = None
    ) -> None:
        """Answer the next ``times`` calls with 429 ``parameters.retry_after`` (ptb raises ``RetryAfter``).

        ``methods`` names the methods it applies to; by default the message-producing ones (``send*``, ``edit*``),
        where flood limits bite, so a running poller or ``getMe`` doesn't swallow the injection.
        """
        chosen = frozenset(m.lower() for m in methods) if methods is not None else None
        with self._lock:
            self._bot(token).injections.append(_Injection(retry_after, times, chosen))

    def block_chat(self, token: str, chat_id: int | str) -> None:
        """The user blocked the bot: sends to ``chat_id`` get 403 "Forbidden: bot was blocked by the user"."""
        with self._lock:
            self._bot(token).blocked.add(chat_id)

    def unblock_chat(self, token: str, chat_id: int | str) -> None:
        with self._lock:
            self._bot(token).blocked.discard(chat_id)

    # ---- pushing updates ---------------------------------------------------------------------------------------

    def push_update(self, token: str, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (``update_id`` is assigned) and wake a waiting long poll. Returns the update."""
        with self._lock:
            bot = self._bot(token)
            update = {"update_id": bot.next_update_id, **{k: v for k, v in update.items() if k != "update_id"}}
            bot.next_update_id += 1
            bot.updates.append(update)
            poll = bot.poll
        if poll:
            poll.wake()
        return update

    def push_text(
        self,
        token: str,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        first_name: str = "Alice",
        username: str | None = None,
        language_code: str | None = "en",
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A private-chat text message (``user_id`` defaults to ``chat_id``, as in real private chats).

        A leading ``/command`` gets its ``bot_command`` entity, so ptb's CommandHandler matches.
        """
        user = self._user(user_id or chat_id, first_name, username, language_code)
        chat = {"id": chat_id, "type": "private", "first_name": first_name}
        if username:
            chat["username"] = username
        return self._push_message(token, chat, user, text, entities)

    def push_command(
        self, token: str, chat_id: int, command: str, args: str = "", *, user_id: int | None = None
    ) -> dict[str, Any]:
        """``/command args`` in a private chat (``chat_id > 0``) or ``/command@botname args`` in a group."""
        text = f"/{command.lstrip('/')}"
        if chat_id < 0:
            text += f"@{self._bot(token).user['username']}"
        if args:
            text += f" {args}"
        if chat_id < 0:
            return self.push_group_text(token, chat_id, text, user_id=user_id or 1001, mention=False)
        return self.push_text(token, chat_id, text, user_id=user_id)

    def push_group_text(
        self,
        token: str,
        chat_id: int,
        text: str,
        *,
        user_id: int = 1001,
        first_name: str = "Bob",
        title: str = "Test group",
        mention: bool = True,
    ) -> dict[str, Any]:
        """A group message (``chat_id`` must be negative; ``-100...`` makes a supergroup).

        With ``mention`` the text starts with ``@<bot username>`` and carries the ``mention`` entity.
        """
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        chat = {"id": chat_id, "type": "supergroup" if str(chat_id).startswith("-100") else "group", "title": title}
        entities: list[dict[str, Any]] = []
        if mention:
            handle = f"@{self._bot(token).user['username']}"
            text = f"{handle} {text}"
            entities.append({"type": "mention", "offset": 0, "length": _utf16_len(handle)})
        return self._push_message(token, chat, self._user(user_id, first_name, None, "en"), text, entities)

    def push_edited_text(self, token: str, chat_id: int, message_id: int, text: str) -> dict[str, Any]:
        """The user edited an earlier message (one pushed before, by id): an ``edited_message`` update."""
        with self._lock:
            bot = self._bot(token)
            original = bot.incoming.get((chat_id, message_id))
        if original is None:
            raise KeyError(f"no pushed message {message_id} in chat {chat_id}")
        edited = {k: v for k, v in original.items() if k not in {"text", "entities"}}
        edited.update(text=text, edit_date=int(time.time()))
        entities = _command_entities(text)
        if entities:
            edited["entities"] = entities
        return self.push_update(token, {"edited_message": edited})

    def push_photo(
        self,
        token: str,
        chat_id: int,
        *,
        caption: str | None = None,
        content: bytes = _TINY_JPEG,
        user_id: int | None = None,
    ) -> dict[str, Any]:
        """A private-chat photo; ``getFile`` + the file route serve ``content`` for every size."""
        with self._lock:
            bot = self._bot(token)
            sizes = []
            for width in (90, 320):
                number = next(self._ids)
                file = _File(f"AgAC-photo-{number}", f"AQAD{number}", f"photos/file_{number}.jpg", content)
                bot.files[file.file_id] = file
                sizes.append(
                    {
                        "file_id": file.file_id,
                        "file_unique_id": file.file_unique_id,
                        "file_size": len(content),
                        "width": width,
                        "height": width,
                    }
                )
        user = self._user(user_id or chat_id, "Alice", None, "en")
        chat = {"id": chat_id, "type": "private", "first_name": "Alice"}
        extra: dict[str, Any] = {"photo": sizes}
        if caption:
            extra["caption"] = caption
        return self._push_message(token, chat, user, None, None, extra)

    def push_callback_query(
        self, token: str, chat_id: int, data: str, *, message_id: int | None = None, user_id: int | None = None
    ) -> dict[str, Any]:
        """An inline-button press on the bot's message ``message_id`` (default: its last message in the chat)."""
        with self._lock:
            bot = self._bot(token)
            sent = [m for m in self._sent if m.token == token and m.chat_id == chat_id]
            if message_id is not None:
                sent = [m for m in sent if m.message_id == message_id]
            if not sent:
                raise KeyError(f"the bot sent no message {message_id or ''} to chat {chat_id}")
            message = self._message_dict(bot, sent[-1])
            query_id = str(4_000_000_000 + next(self._ids))
            bot.callback_queries.add(query_id)
        user = self._user(user_id or chat_id, "Alice", None, "en")
        query = {"id": query_id, "from": user, "message": message, "chat_instance": str(chat_id), "data": data}
        return self.push_update(token, {"callback_query": query})

    def _user(self, user_id: int, first_name: str, username: str | None, language_code: str | None) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        return user

    def _push_message(
        self,
        token: str,
        chat: dict[str, Any],
        user: dict[str, Any],
        text: str | None,
        entities: list[dict[str, Any]] | None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            bot = self._bot(token)
            bot.chats[chat["id"]] = chat
            message: dict[str, Any] = {
                "message_id": self._next_message_id(bot, chat["id"]),
                "from": user,
                "chat": chat,
                "date": int(time.time()),
            }
            if text is not None:
                message["text"] = text
                found = list(entities) if entities else _command_entities(text)
                if found:
                    message["entities"] = found
            message.update(extra or {})
            bot.incoming[(chat["id"], message["message_id"])] = message
        return self.push_update(token, {"message": message})

    def _next_message_id(self, bot: _Bot, chat_id: int | str) -> int:
        # Private chats number messages in both directions with one counter; that's what ids look like to a bot.
        bot.next_message_id[chat_id] = bot.next_message_id.get(chat_id, 0) + 1
        return bot.next_message_id[chat_id]

    # ---- webhooks ----------------------------------------------------------------------------------------------

    def webhook(self, token: str) -> dict[str, Any]:
        """What ``setWebhook`` recorded: ``url``, ``secret_token``, ``allowed_updates``, ``max_connections``..."""
        with self._lock:
            bot = self._bot(token)
            return {
                "url": bot.webhook_url,
                "secret_token": bot.secret_token,
                "allowed_updates": bot.allowed_updates,
                "max_connections": bot.max_connections,
                "ip_address": bot.ip_address,
            }

    async def deliver_webhook(self, token: str, *, request_timeout: float = 5.0) -> list[int]:
        """POST pending updates to the bot's webhook, as Telegram does, and return the HTTP statuses.

        The secret goes in ``X-Telegram-Bot-Api-Secret-Token``. A 2xx confirms the update; anything else stops the
        round and is recorded as getWebhookInfo's ``last_error_*`` (Telegram would retry it later).
        """
        import httpx  # only this helper needs an HTTP client

        with self._lock:
            bot = self._bot(token)
            url, secret = bot.webhook_url, bot.secret_token
            pending = [u for u in bot.updates if self._wanted(bot, u)]
        if not url:
            raise RuntimeError("no webhook is set for this bot")
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        statuses: list[int] = []
        async with httpx.AsyncClient(timeout=request_timeout) as client:
            for update in pending:
                try:
                    response = await client.post(url, json=update, headers=headers)
                    status, error = response.status_code, f"Wrong response from the webhook: {response.status_code}"
                except httpx.HTTPError as exc:
                    status, error = 0, f"Connection failed: {exc.__class__.__name__}"
                statuses.append(status)
                with self._lock:
                    if 200 <= status < 300:
                        bot.updates = [u for u in bot.updates if u["update_id"] != update["update_id"]]
                    else:
                        bot.last_error_date, bot.last_error_message = int(time.time()), error
                        break
        return statuses

    # ---- reading what happened ---------------------------------------------------------------------------------

    def sent_messages(self, token: str | None = None, chat_id: int | str | None = None) -> list[SentMessage]:
        """Messages accepted by sendMessage, oldest first, optionally for one bot and/or chat."""
        with self._lock:
            return _select(self._sent, token, chat_id)

    def wait_sent(
        self, token: str | None = None, chat_id: int | str | None = None, *, count: int = 1, within: float = 3.0
    ) -> list[SentMessage]:
        """Block until at least ``count`` matching messages were sent, then return them all; AssertionError after
        ``within`` seconds. From async code use :meth:`await_sent`."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(_select(self._sent, token, chat_id)) >= count, within):
                found = [m.text for m in _select(self._sent, token, chat_id)]
                raise AssertionError(f"expected {count} sent message(s) within {within} s, got {found!r}")
            return _select(self._sent, token, chat_id)

    async def await_sent(
        self, token: str | None = None, chat_id: int | str | None = None, *, count: int = 1, within: float = 3.0
    ) -> list[SentMessage]:
        """:meth:`wait_sent` without blocking the test's event loop (the bot under test may run on it)."""
        return await asyncio.to_thread(self.wait_sent, token, chat_id, count=count, within=within)

    def sent_texts(self, token: str | None = None, chat_id: int | str | None = None) -> list[str]:
        return [m.text for m in self.sent_messages(token, chat_id)]

    def chat_actions(self, token: str | None = None, chat_id: int | str | None = None) -> list[ChatAction]:
        with self._lock:
            return _select(self._actions, token, chat_id)

    def drafts(self, token: str | None = None, chat_id: int | str | None = None) -> list[Draft]:
        with self._lock:
            return _select(self._drafts, token, chat_id)

    def calls(self, token: str | None = None, method: str | None = None) -> list[ApiCall]:
        """Every authenticated API call (method names as the client spelled them)."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (token is None or c.token == token) and (method is None or c.method.lower() == method.lower())
            ]

    def answered_callbacks(self, token: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self._answered_callbacks if token is None or a["token"] == token]

    def commands(
        self, token: str, *, language_code: str = "", scope: dict[str, Any] | None = None
    ) -> list[dict[str, str]]:
        """The command list setMyCommands stored for this scope and language (``""`` = all languages)."""
        with self._lock:
            return list(self._bot(token).commands.get((_scope_key(scope), language_code), []))

    def pending_updates(self, token: str) -> list[dict[str, Any]]:
        """Updates not yet confirmed by a getUpdates offset (or a 2xx webhook delivery)."""
        with self._lock:
            return list(self._bot(token).updates)

    def max_sends_in_window(self, token: str, *, chat_id: int | str | None = None, window: float = 1.0) -> int:
        """The most sendMessage calls accepted within any ``window``-second span (half-open), for rate-limit tests.

        Telegram allows about 30 messages/s per bot and about 1 message/s per chat.
        """
        if window <= 0:
            raise ValueError("window must be positive")
        times = sorted(m.at for m in self.sent_messages(token, chat_id))
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    # ---- HTTP handling -----------------------------------------------------------------------------------------

    async def _handle_method(self, request: Request) -> Response:
        token = request.path_params["token"]
        method = request.path_params["method"]
        if not _TOKEN_RE.match(token):
            return _error(404, "Not Found")
        with self._lock:
            bot = self._bots.get(token)
        if bot is None:
            return _error(401, "Unauthorized")
        handler = self._methods.get(method.lower())
        if handler is None:
            return _error(404, "Not Found")
        params: dict[str, Any] = {}
        try:
            params = await _read_params(request)
            self._take_injected_429(bot, method.lower())
            result = handler(bot, _Params(params))
            if asyncio.iscoroutine(result):
                result = await result
            response = _ok(result)
        except _ApiError as exc:
            response = _error(exc.status, exc.description, exc.parameters)
        with self._lock:
            self._calls.append(ApiCall(token, method, _loggable(params), time.monotonic(), response.status_code))
        return response

    async def _handle_file(self, request: Request) -> Response:
        token, path = request.path_params["token"], request.path_params["file_path"]
        with self._lock:
            bot = self._bots.get(token)
            file = next((f for f in bot.files.values() if f.file_path == path), None) if bot else None
        if file is None:
            return _error(404, "Not Found")
        return Response(file.content, media_type="application/octet-stream")

    def _take_injected_429(self, bot: _Bot, method: str) -> None:
        with self._lock:
            for injection in bot.injections:
                if injection.methods is not None:
                    applies = method in injection.methods
                else:
                    applies = method.startswith(("send", "edit"))
                if applies and injection.remaining > 0:
                    injection.remaining -= 1
                    if injection.remaining == 0:
                        bot.injections.remove(injection)
                    raise _ApiError(
                        429,
                        f"Too Many Requests: retry after {injection.retry_after}",
                        {"retry_after": injection.retry_after},
                    )

    def _check_blocked(self, bot: _Bot, chat_id: int | str) -> None:
        if chat_id in bot.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")

    def _wanted(self, bot: _Bot, update: dict[str, Any]) -> bool:
        kind = _update_type(update)
        if bot.allowed_updates:
            return kind in bot.allowed_updates
        return kind not in _OPT_IN_UPDATES

    # ---- methods -----------------------------------------------------------------------------------------------

    def _get_me(self, bot: _Bot, params: _Params) -> dict[str, Any]:
        return dict(bot.user)

    async def _get_updates(self, bot: _Bot, params: _Params) -> list[dict[str, Any]]:
        offset = params.get_int("offset", 0) or 0
        limit = min(max(params.get_int("limit", 100) or 100, 1), 100)
        timeout = max(params.get_number("timeout", 0.0), 0.0)
        allowed = params.get_json("allowed_updates")
        with self._lock:
            if bot.webhook_url:
                raise _ApiError(409, _CONFLICT_WEBHOOK_ACTIVE)
            if allowed is not None:
                # Like the real server, the setting persists until a later call changes it.
                bot.allowed_updates = list(allowed)
            self._confirm(bot, offset)
            ready = [u for u in bot.updates if self._wanted(bot, u)][:limit]
            if ready or timeout == 0:
                return ready
            # A new long poll terminates the pending one, which gets the 409 (the newest poller wins).
            poll = _Poll()
            previous, bot.poll = bot.poll, poll
        if previous is not None:
            previous.wake(conflict=_CONFLICT_OTHER_POLL)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poll.event.wait(), min(timeout, self.long_poll_cap))
        finally:
            with self._lock:
                if bot.poll is poll:
                    bot.poll = None
        if poll.conflict:
            raise _ApiError(409, poll.conflict)
        with self._lock:
            return [u for u in bot.updates if self._wanted(bot, u)][:limit]

    def _confirm(self, bot: _Bot, offset: int) -> None:
        if offset > 0:
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
        elif offset < 0:
            # A negative offset counts from the end of the queue and forgets everything before.
            bot.updates = bot.updates[offset:]

    def _set_webhook(self, bot: _Bot, params: _Params) -> bool:
        url = params.get_str("url") or ""
        if not url:
            return self._delete_webhook(bot, params)
        parts = urlsplit(url)
        if not self.allow_http_webhooks:
            if parts.scheme != "https":
                raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if (parts.port or 443) not in _WEBHOOK_PORTS:
                raise _bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        elif parts.scheme not in {"http", "https"} or not parts.hostname:
            raise _bad_request("bad webhook: Wrong URL host")
        secret = params.get_str("secret_token")
        if secret is not None and not _SECRET_RE.match(secret):
            raise _bad_request("secret token contains unallowed characters")
        max_connections = params.get_int("max_connections", 40) or 40
        if not 1 <= max_connections <= 100:
            max_connections = min(max(max_connections, 1), 100)
        allowed = params.get_json("allowed_updates")
        with self._lock:
            if params.get_bool("drop_pending_updates"):
                bot.updates.clear()
            bot.webhook_url, bot.secret_token, bot.max_connections = url, secret, max_connections
            bot.ip_address = params.get_str("ip_address")
            bot.has_custom_certificate = isinstance(params.raw.get("certificate"), _Upload)
            if allowed is not None:
                bot.allowed_updates = list(allowed)
            poll, bot.poll = bot.poll, None
        if poll:
            poll.wake(conflict="Conflict: terminated by setWebhook request")
        return True

    def _delete_webhook(self, bot: _Bot, params: _Params) -> bool:
        with self._lock:
            if params.get_bool("drop_pending_updates"):
                bot.updates.clear()
            bot.webhook_url, bot.secret_token = "", None
            bot.ip_address, bot.has_custom_certificate = None, False
            bot.last_error_date = bot.last_error_message = None
        return True

    def _get_webhook_info(self, bot: _Bot, params: _Params) -> dict[str, Any]:
        with self._lock:
            info: dict[str, Any] = {
                "url": bot.webhook_url,
                "has_custom_certificate": bot.has_custom_certificate,
                "pending_update_count": len(bot.updates),
            }
            if bot.webhook_url:
                info["max_connections"] = bot.max_connections
                if bot.ip_address:
                    info["ip_address"] = bot.ip_address
                if bot.allowed_updates:
                    info["allowed_updates"] = list(bot.allowed_updates)
            if bot.last_error_date:
                info.update(last_error_date=bot.last_error_date, last_error_message=bot.last_error_message)
            return info

    def _formatted_text(
        self, params: _Params, *, allow_empty: bool = False
    ) -> tuple[str, str, str | None, list[dict[str, Any]]]:
        raw_text = params.get_str("text") or ""
        parse_mode = params.get_str("parse_mode") or None
        if parse_mode is not None and parse_mode.lower() not in {"html", "markdown", "markdownv2"}:
            raise _bad_request(f'unsupported parse_mode "{parse_mode}"')
        if parse_mode and parse_mode.lower() == "html":
            try:
                text, entities = parse_html(raw_text)
            except HtmlParseError as exc:
                raise _bad_request(f"can't parse entities: {exc}") from None
        else:
            text, entities = raw_text, list(params.get_json("entities") or [])
        if not text.strip() and not allow_empty:
            raise _bad_request("message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        return raw_text, text, parse_mode, entities

    def _send_message(self, bot: _Bot, params: _Params) -> dict[str, Any]:
        chat_id = params.get_chat_id()
        raw_text, text, parse_mode, entities = self._formatted_text(params)
        reply_markup = params.get_json("reply_markup")
        with self._lock:
            self._check_blocked(bot, chat_id)
            if isinstance(chat_id, str) and chat_id not in bot.chats:
                raise _bad_request("chat not found")
            now = time.time()
            sent = SentMessage(
                token=bot.token,
                chat_id=chat_id,
                message_id=self._next_message_id(bot, chat_id),
                text=text,
                raw_text=raw_text,
                parse_mode=parse_mode,
                entities=entities,
                reply_markup=reply_markup,
                params=_loggable(params.raw),
                at=time.monotonic(),
                date=int(now),
            )
            self._sent.append(sent)
            self._changed.notify_all()
            return self._message_dict(bot, sent)

    def _message_dict(self, bot: _Bot, sent: SentMessage) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "from": bot.short_user,
            "chat": _chat_for(sent.chat_id, bot.chats),
            "date": sent.date,
            "text": sent.text,
        }
        if sent.entities:
            message["entities"] = sent.entities
        if sent.reply_markup:
            message["reply_markup"] = sent.reply_markup
        if sent.edits:
            message["edit_date"] = sent.date + max(1, int(sent.edits[-1][0] - sent.at))
        return message

    def _edit_message_text(self, bot: _Bot, params: _Params) -> dict[str, Any]:
        if "inline_message_id" in params:
            raise _bad_request("inline messages are not supported by the fake")
        chat_id = params.get_chat_id()
        message_id = params.get_int("message_id")
        raw_text, text, parse_mode, entities = self._formatted_text(params)
        reply_markup = params.get_json("reply_markup")
        with self._lock:
            self._check_blocked(bot, chat_id)
            sent = next(
                (m for m in self._sent if m.token == bot.token and m.chat_id == chat_id and m.message_id == message_id),
                None,
            )
            if sent is None:
                raise _bad_request("message to edit not found")
            if (sent.text, sent.entities, sent.reply_markup) == (text, entities, reply_markup):
                raise _ApiError(400, _NOT_MODIFIED)
            sent.text, sent.raw_text, sent.parse_mode = text, raw_text, parse_mode
            sent.entities, sent.reply_markup = entities, reply_markup
            sent.edits.append((time.monotonic(), raw_text))
            self._changed.notify_all()
            return self._message_dict(bot, sent)

    def _send_chat_action(self, bot: _Bot, params: _Params) -> bool:
        chat_id = params.get_chat_id()
        action = params.get_str("action")
        if action not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        with self._lock:
            self._check_blocked(bot, chat_id)
            self._actions.append(ChatAction(bot.token, chat_id, action, time.monotonic()))
            self._changed.notify_all()
        return True

    def _send_message_draft(self, bot: _Bot, params: _Params) -> bool:
        chat_id = params.get_chat_id()
        draft_id = params.get_int("draft_id", 0)
        if not draft_id:
            raise _bad_request("draft_id must be non-zero")  # [UNCONFIRMED wording]
        # Since Bot API 10.0 an empty draft shows a "Thinking..." placeholder.
        _, text, _, _ = self._formatted_text(params, allow_empty=True)
        with self._lock:
            self._check_blocked(bot, chat_id)
            self._drafts.append(Draft(bot.token, chat_id, draft_id, text, time.monotonic()))
            self._changed.notify_all()
        return True

    def _set_my_commands(self, bot: _Bot, params: _Params) -> bool:
        commands = params.get_json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request('parameter "commands" must be an array of BotCommand')
        cleaned: list[dict[str, str]] = []
        for item in commands:
            if not isinstance(item, dict) or not _COMMAND_RE.match(str(item.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            description = str(item.get("description", ""))
            if not 1 <= len(description) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": item["command"], "description": description})
        key = (_scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        with self._lock:
            bot.commands[key] = cleaned
        return True

    def _get_my_commands(self, bot: _Bot, params: _Params) -> list[dict[str, str]]:
        key = (_scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        with self._lock:
            return list(bot.commands.get(key, []))

    def _delete_my_commands(self, bot: _Bot, params: _Params) -> bool:
        key = (_scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        with self._lock:
            bot.commands.pop(key, None)
        return True

    def _answer_callback_query(self, bot: _Bot, params: _Params) -> bool:
        query_id = params.get_str("callback_query_id") or ""
        with self._lock:
            if query_id not in bot.callback_queries:
                raise _bad_request("query is too old and response timeout expired or query ID is invalid")
            bot.callback_queries.discard(query_id)
            self._answered_callbacks.append(
                {
                    "token": bot.token,
                    "callback_query_id": query_id,
                    "text": params.get_str("text"),
                    "show_alert": params.get_bool("show_alert"),
                    "url": params.get_str("url"),
                    "at": time.monotonic(),
                }
            )
        return True

    def _get_file(self, bot: _Bot, params: _Params) -> dict[str, Any]:
        with self._lock:
            file = bot.files.get(params.get_str("file_id") or "")
        if file is None:
            raise _bad_request("invalid file_id")
        return {
            "file_id": file.file_id,
            "file_unique_id": file.file_unique_id,
            "file_size": len(file.content),
            "file_path": file.file_path,
        }


_Record = TypeVar("_Record", SentMessage, ChatAction, Draft)


def _select(records: list[_Record], token: str | None, chat_id: int | str | None) -> list[_Record]:
    return [r for r in records if (token is None or r.token == token) and (chat_id is None or r.chat_id == chat_id)]


def _scope_key(scope: Any) -> str:
    return json.dumps(scope or {"type": "default"}, sort_keys=True)


def _command_entities(text: str) -> list[dict[str, Any]]:
    match = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?", text)
    if match is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": _utf16_len(match.group(0))}]


def _loggable(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (f"<file {v.filename!r}, {len(v.content)} bytes>" if isinstance(v, _Upload) else v)
        for k, v in params.items()
    }


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)
