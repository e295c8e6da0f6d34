"""Website widget rules: who may embed a bot, which language it speaks, accepting a visitor's message, history.

Allowed origins: a page may show a bot's widget when its origin (scheme://host[:port], as the browser sends it in
the Origin header) is on the bot's ``allowed_origins``, or when it is our own site (DOMAIN_URL's origin; in
development also the host the request was addressed to): that is the live preview on the bot page, which
therefore always works. An empty list thus refuses every other site: owners add their website before the widget
shows there. A missing Origin header (a same-origin GET, or a client that is not a browser) is treated as our own
site for reads; sending a message always needs one, since browsers send it with every POST.

Accepting a message is one Lua script on Redis, so a retried POST (same client_message_id) never adds a second
message however the retries interleave: the idempotency marker, the visitor's entry on the conversation stream, the
``widget.message`` InboundEvent on the tenant's inbound stream and the wake-up of an idle runtime happen together
or not at all. Redis is the only state, so any web worker can accept the message and any other can stream the
answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime import contract
from bot_runtime.i18n import N_, gettext, normalize_locale, use_locale
from control_plane.bots.schemas import WidgetSettings, avatar_path
from control_plane.kit import ratelimit
from control_plane.kit.errors import NotFound, RateLimited
from control_plane.kit.i18n import parse_accept_language
from control_plane.kit.redis import get_redis, key
from control_plane.runtimes.publish import runtime_status, sync_key_prefix
from control_plane.settings import get_settings
from control_plane.widget import repository
from control_plane.widget.errors import MessageTooLong, OriginRefused, SendingTooFast, WidgetUnavailable
from control_plane.widget.schemas import (
    WidgetConfig,
    WidgetHistory,
    WidgetMessage,
    WidgetMessageIn,
    WidgetStrings,
)

# A retried POST within this time returns the first attempt's message id.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# Several visitors can share an address (an office, a mobile carrier's NAT): the per-IP limit is this many
# visitors' worth of the per-visitor limit.
IP_LIMIT_VISITORS = 5
RATE_WINDOW_SECONDS = 60

STRINGS: dict[str, str] = {
    "open": N_("Open chat"),
    "close": N_("Close chat"),
    "dismiss": N_("Dismiss"),
    "input_label": N_("Your message"),
    "placeholder": N_("Type your message…"),
    "send": N_("Send"),
    "sending": N_("Sending…"),
    "not_sent": N_("Not sent."),
    "retry": N_("Try again"),
    "typing": N_("Typing…"),
    "reconnecting": N_("Connection lost. Reconnecting…"),
    "error": N_("Something went wrong. Please try again."),
}
CHAT_LABEL = N_("Chat with %(name)s")


@dataclass(frozen=True, slots=True)
class WidgetBot:
    """What the widget API knows about a bot, read once per request."""

    id: str
    tenant_id: str
    public_id: str
    name: str
    language: str
    welcome_message: str
    allowed_origins: tuple[str, ...]
    look: WidgetSettings
    avatar_path: str | None
    available: bool  # enabled, and the workspace is active with a live plan


async def get_widget_bot(db: AsyncSession, public_id: str) -> WidgetBot:
    """The bot behind ``public_id`` (404 when there is none)."""
    if not public_id or len(public_id) > 40:
        raise NotFound()
    found = await repository.bot_by_public_id(db, public_id)
    if found is None:
        raise NotFound()
    bot, tenant, subscription = found
    return WidgetBot(
        id=str(bot.id),
        tenant_id=str(bot.tenant_id),
        public_id=bot.public_id,
        name=bot.name,
        language=bot.language,
        welcome_message=bot.welcome_message,
        allowed_origins=tuple(origin.lower() for origin in bot.allowed_origins or ()),
        look=WidgetSettings.from_stored(bot.widget),
        avatar_path=avatar_path(bot),
        available=bot.is_enabled and runtime_status(tenant, subscription) == "active",
    )


# ---------------------------------------------------------------------------------------------------------------
# Origins


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


def is_own_origin(origin: str, host: str | None) -> bool:
    """Our own site: DOMAIN_URL's origin; outside production also the host this request was sent to.

    The host fallback lets the bot page's preview work in development however the app is reached (127.0.0.1 or
    localhost, another port); production serves the bot page at DOMAIN_URL only, and there a page whose DNS name
    was rebound to our address must not pass for our own site.
    """
    netloc = _netloc(origin)
    if not netloc:
        return False
    settings = get_settings()
    domain = urlsplit(settings.domain_url)
    if origin.lower() == f"{domain.scheme}://{domain.netloc}".lower():
        return True
    return not settings.is_production and bool(host) and netloc == (host or "").lower()


def origin_allowed(bot: WidgetBot, origin: str | None, host: str | None) -> bool:
    """May a page at ``origin`` use this bot's widget? None (no Origin header) counts as our own site."""
    if origin is None:
        return True
    origin = origin.strip().lower()
    if not origin or origin == "null":  # sandboxed frames and file:// pages
        return False
    return origin in bot.allowed_origins or is_own_origin(origin, host)


def check_origin(bot: WidgetBot, origin: str | None, host: str | None, *, required: bool = False) -> None:
    if (required and origin is None) or not origin_allowed(bot, origin, host):
        raise OriginRefused()


# ---------------------------------------------------------------------------------------------------------------
# Language and config


def widget_language(bot: WidgetBot, requested: str | None, accept_language: str | None) -> str:
    """The owner's choice for the widget, else the visitor's browser language, else the bot's main language."""
    return (
        bot.look.language
        or normalize_locale(requested)
        or parse_accept_language(accept_language)
        or normalize_locale(bot.language)
        or "en"
    )


def text_color_on(color: str) -> str:
    """Dark or white text, whichever reads better on ``color`` (#rrggbb), by relative luminance (WCAG)."""

    def channel(hex_pair: str) -> float:
        value = int(hex_pair, 16) / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    try:
        r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
    except ValueError:
        return "#ffffff"
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # Contrast with white is 1.05 / (L + 0.05); with #111827 (luminance 0.0092) it is (L + 0.05) / 0.0592.
    return "#111827" if (luminance + 0.05) / 0.0592 > 1.05 / (luminance + 0.05) else "#ffffff"


def widget_config(bot: WidgetBot, language: str) -> WidgetConfig:
    """The public configuration widget.js draws the chat from, with its interface text in ``language``."""
    with use_locale(language):
        strings = WidgetStrings(
            **{name: gettext(msgid) for name, msgid in STRINGS.items()},
            chat_label=gettext(CHAT_LABEL, name=bot.look.title or bot.name),
        )
    return WidgetConfig(
        public_id=bot.public_id,
        name=bot.name,
        title=bot.look.title or bot.name,
        greeting=bot.look.greeting,
        welcome_message=bot.welcome_message,
        color=bot.look.color,
        text_color=text_color_on(bot.look.color),
        position=bot.look.position,
        language=language,  # type: ignore[arg-type]
        avatar_url=bot.avatar_path,
        max_message_chars=get_settings().max_message_chars,
        strings=strings,
    )


# ---------------------------------------------------------------------------------------------------------------
# Messages


def idempotency_key(bot_id: str, client_message_id: str) -> str:
    return key("widget", "sent", bot_id, client_message_id)


def inbound_event_id(bot_id: str, client_message_id: str) -> str:
    """The runtime dedupes on this too, so even a message queued twice is answered once."""
    return f"w:{bot_id}:{client_message_id}"


# KEYS: idempotency marker, conversation stream, inbound stream, idle marker, lease.
# ARGV: marker TTL, conversation MAXLEN, conversation TTL, role, text, at, client message id, inbound event JSON,
#       wake channel, tenant id.
# Returns the visitor entry's id, the first attempt's when this client_message_id was accepted before.
_ACCEPT = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'role', ARGV[4], 'text', ARGV[5], 'at', ARGV[6], 'client_message_id', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], id, 'EX', ARGV[1])
redis.call('XADD', KEYS[3], '*', 'data', ARGV[8])
local was_idle = redis.call('DEL', KEYS[4])
if was_idle == 1 or redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('PUBLISH', ARGV[9], ARGV[10])
end
return id
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def accept_message(bot: WidgetBot, body: WidgetMessageIn, *, ip: str, language: str) -> str:
    """Queue the visitor's message for the tenant's runtime; returns its message id (the same for a retry).

    Refuses (translated) when the bot can't chat now (503), the text is too long (422), or the visitor or their
    address sends too fast (429). A retry of an accepted message is answered before any limit is counted.
    """
    settings = get_settings()
    if not bot.available:
        raise WidgetUnavailable()
    if len(body.text) > settings.max_message_chars:
        raise MessageTooLong(
            params={"limit": settings.max_message_chars}, fields=[("text", N_("This value is too long."))]
        )
    redis = get_redis()
    marker = idempotency_key(bot.id, body.client_message_id)
    existing = await redis.get(marker)
    if existing is not None:
        return _text(existing)
    limit = settings.widget_limit_per_visitor_per_minute
    try:
        await ratelimit.enforce(
            "widget-visitor", f"{bot.id}:{body.visitor_id}", limit=limit, window_seconds=RATE_WINDOW_SECONDS
        )
        await ratelimit.enforce("widget-ip", ip, limit=limit * IP_LIMIT_VISITORS, window_seconds=RATE_WINDOW_SECONDS)
    except RateLimited as exc:
        raise SendingTooFast(params=exc.params, headers=exc.headers) from None
    sync_key_prefix()
    now = time.time()
    event = contract.InboundEvent(
        event_id=inbound_event_id(bot.id, body.client_message_id),
        bot_id=bot.id,
        kind="widget.message",
        payload={
            "visitor_id": body.visitor_id,
            "text": body.text,
            "language": language,
            "reply_to": body.client_message_id,
        },
        received_at=now,
    )
    message_id = await redis.eval(
        _ACCEPT,
        5,
        marker,
        contract.widget_conversation_stream(bot.tenant_id, bot.id, body.visitor_id),
        contract.inbound_stream(bot.tenant_id),
        contract.idle_key(bot.tenant_id),
        contract.lease_key(bot.tenant_id),
        IDEMPOTENCY_TTL_SECONDS,
        contract.WIDGET_CONVERSATION_MAXLEN,
        contract.WIDGET_CONVERSATION_TTL,
        "visitor",
        body.text,
        f"{now:.3f}",
        body.client_message_id,
        event.to_fields()["data"],
        contract.wake_channel(),
        bot.tenant_id,
    )
    return _text(message_id)


# ---------------------------------------------------------------------------------------------------------------
# History


def conversation_key(bot: WidgetBot, visitor_id: str) -> str:
    sync_key_prefix()
    return contract.widget_conversation_stream(bot.tenant_id, bot.id, visitor_id)


def to_message(entry_id: object, fields: dict[object, object]) -> WidgetMessage | None:
    """A conversation stream entry as the widget sees it; None for entries it has no use for."""
    data = {_text(k): _text(v) for k, v in fields.items()}
    role = data.get("role")
    if role not in ("visitor", "bot"):
        return None
    try:
        at = float(data.get("at") or 0)
    except ValueError:
        at = 0.0
    return WidgetMessage(
        id=_text(entry_id),
        role=role,  # type: ignore[arg-type]
        text=data.get("text", ""),
        at=at,
        client_message_id=data.get("client_message_id") or None,
        reply_to=data.get("reply_to") or None,
        notice=data.get("notice") or None,
    )


async def history(bot: WidgetBot, visitor_id: str) -> WidgetHistory:
    """The visitor's whole conversation with the bot (the stream keeps about WIDGET_CONVERSATION_MAXLEN)."""
    entries = await get_redis().xrange(conversation_key(bot, visitor_id))
    messages = [m for m in (to_message(entry_id, fields) for entry_id, fields in entries) if m is not None]
    last_id = _text(entries[-1][0]) if entries else None
    return WidgetHistory(messages=messages, last_id=last_id)


def event_json(message: WidgetMessage) -> str:
    return json.dumps(message.model_dump(), ensure_ascii=False, separators=(",", ":"))
