"""Request and response bodies of the bots API, and the rules every bot field must satisfy.

Validators raise ``ValueError(N_(msgid))``; the error handler turns them into translated field messages.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from bot_runtime.i18n import N_
from control_plane.models import Bot
from control_plane.settings import get_settings

Language = Literal["uz", "ru", "en"]

NAME_MAX = 120
DESCRIPTION_MAX = 1000
INSTRUCTIONS_MAX = 10_000
MESSAGE_MAX = 1000
ORIGINS_MAX = 50
ORIGIN_MAX = 300
WIDGET_TITLE_MAX = 60
WIDGET_GREETING_MAX = 500
DEFAULT_WIDGET_COLOR = "#4f46e5"

ORIGIN_MESSAGE = N_("Enter a website address like https://example.com, without a path.")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_text(value: str) -> str:
    """Refuse what PostgreSQL cannot store in text (NUL, lone surrogates), so bad input is a 422 and never a 500."""
    if "\x00" in value:
        raise ValueError(N_("This value contains characters that are not allowed."))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(N_("This value contains characters that are not allowed.")) from None
    return value


def _hostname(host: str) -> str:
    """A hostname or IP literal in the form browsers send in the Origin header (punycode, lower case)."""
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(ORIGIN_MESSAGE) from None
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        ascii_host = host.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(ORIGIN_MESSAGE) from None
    labels = ascii_host.split(".")
    if not ascii_host or len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(ORIGIN_MESSAGE)
    return ascii_host


def normalize_origin(value: str) -> str:
    """``HTTPS://Shop.example:443/`` → ``https://shop.example``: scheme://host[:port], exactly as a browser sends it.

    A bare trailing slash is forgiven (people paste addresses); any other path, a query or credentials are not.
    """
    value = check_text(value).strip()
    if not value or len(value) > ORIGIN_MAX or any(ch in value for ch in "?#@\\ \t"):
        raise ValueError(ORIGIN_MESSAGE)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(ORIGIN_MESSAGE) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or parts.path not in ("", "/") or not parts.hostname:
        raise ValueError(ORIGIN_MESSAGE)
    host = _hostname(parts.hostname)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    if port == 0:
        raise ValueError(ORIGIN_MESSAGE)
    return f"{scheme}://{host}:{port}"


def unique_origins(values: list[str]) -> list[str]:
    """Drop repeats (after normalising) and keep the order the owner wrote them in."""
    return list(dict.fromkeys(values))


def _named(value: str) -> str:
    if not value:
        raise ValueError(N_("Enter a name for the bot."))
    return value


# The field rules live in the types, so creating and editing a bot cannot drift apart.
Origin = Annotated[str, AfterValidator(normalize_origin)]
Name = Annotated[str, Field(max_length=NAME_MAX), AfterValidator(check_text), AfterValidator(_named)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX), AfterValidator(check_text)]
Instructions = Annotated[str, Field(max_length=INSTRUCTIONS_MAX), AfterValidator(check_text)]
BotMessage = Annotated[str, Field(max_length=MESSAGE_MAX), AfterValidator(check_text)]
Origins = Annotated[list[Origin], Field(max_length=ORIGINS_MAX), AfterValidator(unique_origins)]


class WidgetSettings(BaseModel):
    """How the website widget looks. In a PATCH only the keys sent change; the rest keep their stored values."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    color: str = Field(default=DEFAULT_WIDGET_COLOR, description="Accent colour, #rrggbb.")
    title: str = Field(default="", max_length=WIDGET_TITLE_MAX, description="Header title; empty: the bot's name.")
    position: Literal["left", "right"] = "right"
    greeting: str = Field(default="", max_length=WIDGET_GREETING_MAX, description="Bubble text before a chat.")
    language: Language | None = Field(default=None, description="Widget language; null: the visitor's language.")

    @field_validator("color")
    @classmethod
    def _color(cls, value: str) -> str:
        if not _COLOR.match(value):
            raise ValueError(N_("Enter a colour like #4f46e5."))
        return value.lower()

    @field_validator("title", "greeting")
    @classmethod
    def _text(cls, value: str) -> str:
        return check_text(value)

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> WidgetSettings:
        """Read the JSON column leniently: unknown keys and values that no longer validate fall back to defaults."""
        values: dict[str, Any] = {}
        for key, value in (stored or {}).items():
            if key in cls.model_fields:
                try:
                    values[key] = getattr(cls.model_validate({key: value}), key)
                except ValueError:
                    continue
        return cls.model_validate(values)

    def merged_into(self, stored: dict[str, Any] | None) -> dict[str, Any]:
        """The stored settings with the fields sent in this request applied on top."""
        current = WidgetSettings.from_stored(stored).model_dump()
        current.update(self.model_dump(include=self.model_fields_set))
        return current


class BotCreate(BaseModel):
    """A new bot. Only the name is required; ``strict`` (answer only from the knowledge base) defaults to true."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    description: Description = ""
    language: Language = "en"
    instructions: Instructions = Field(default="", description="The bot's persona and rules, in plain words.")
    welcome_message: BotMessage = ""
    fallback_message: BotMessage = Field(default="", description="Said when the knowledge base has no answer.")
    strict: bool = True
    is_enabled: bool = True
    allowed_origins: Origins = Field(default_factory=list, description="Websites that may embed the widget.")
    widget: WidgetSettings | None = None


class BotUpdate(BaseModel):
    """A partial update: only the fields sent change. ``null`` is refused for every field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    description: Description | None = None
    language: Language | None = None
    instructions: Instructions | None = None
    welcome_message: BotMessage | None = None
    fallback_message: BotMessage | None = None
    strict: bool | None = None
    is_enabled: bool | None = None
    allowed_origins: Origins | None = None
    widget: WidgetSettings | None = None

    # Validators run only for fields that were sent, so an explicit null is caught here and an absent field is not.
    @field_validator("*")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(N_("This field cannot be empty."))
        return value


def avatar_path(bot: Bot) -> str | None:
    """The public, cache-busting avatar address (the version changes with every upload), or None."""
    if not bot.avatar_mime:
        return None
    return f"/bots/{bot.public_id}/avatar?v={bot.avatar_version}"


class BotOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    instructions: str
    language: str
    welcome_message: str
    fallback_message: str
    is_enabled: bool
    strict: bool
    public_id: str
    allowed_origins: list[str]
    avatar_url: str | None = Field(description="Absolute address of the avatar (public, for the widget).")
    widget: WidgetSettings
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_bot(cls, bot: Bot) -> BotOut:
        path = avatar_path(bot)
        return cls(
            id=bot.id,
            name=bot.name,
            description=bot.description,
            instructions=bot.instructions,
            language=bot.language,
            welcome_message=bot.welcome_message,
            fallback_message=bot.fallback_message,
            is_enabled=bot.is_enabled,
            strict=bot.strict,
            public_id=bot.public_id,
            allowed_origins=list(bot.allowed_origins or []),
            # Absolute, because the widget shows it on the customer's own website.
            avatar_url=get_settings().domain_url.rstrip("/") + path if path else None,
            widget=WidgetSettings.from_stored(bot.widget),
            created_at=bot.created_at,
            updated_at=bot.updated_at,
        )


class BotList(BaseModel):
    items: list[BotOut]
    total: int
    limit: int
    offset: int
