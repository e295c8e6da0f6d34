"""Request and response bodies of the public widget API (what widget.js sends and reads)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from control_plane.bots.schemas import Language, check_text

# Random ids the widget makes itself (crypto.getRandomValues, base64url): long enough to be unguessable, short
# enough to sit in Redis key names.
VisitorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$", description="The visitor's random id.")]
ClientMessageId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="Random per message; a retry sends the same one.")
]


class WidgetStrings(BaseModel):
    """The widget's interface text, translated on the server into the widget's language."""

    open: str
    close: str
    dismiss: str
    input_label: str
    placeholder: str
    send: str
    sending: str
    not_sent: str
    retry: str
    typing: str
    reconnecting: str
    error: str
    chat_label: str


class WidgetConfig(BaseModel):
    """Everything widget.js needs to draw the chat for one bot (public data: it is shown to every visitor)."""

    public_id: str
    name: str
    title: str = Field(description="Header title (the bot's name when the owner set none).")
    greeting: str = Field(description="Bubble text shown next to the button before the visitor opens the chat.")
    welcome_message: str = Field(description="First bot message of a new conversation (shown, not stored).")
    color: str = Field(description="Accent colour, #rrggbb.")
    text_color: str = Field(description="Text colour readable on the accent colour, #rrggbb.")
    position: Literal["left", "right"]
    language: Language
    avatar_url: str | None = Field(description="Avatar address relative to the API's origin; null: none.")
    max_message_chars: int
    strings: WidgetStrings


class WidgetMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    visitor_id: VisitorId
    text: str = Field(min_length=1, description="The visitor's message (at most MAX_MESSAGE_CHARS characters).")
    client_message_id: ClientMessageId
    language: str | None = Field(default=None, max_length=16, description="The widget's language, a hint.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return check_text(value)


class WidgetMessageAccepted(BaseModel):
    message_id: str = Field(description="Id of the visitor's message in the conversation (also its SSE event id).")


class WidgetMessage(BaseModel):
    """One message of a visitor's conversation, as history returns it and the SSE stream sends it."""

    id: str = Field(description="Stream entry id; orders the conversation and is the SSE event id.")
    role: Literal["visitor", "bot"]
    text: str
    at: float
    client_message_id: str | None = None
    reply_to: str | None = Field(default=None, description="For bot messages: the client_message_id answered.")
    notice: str | None = Field(default=None, description="For bot notices (limit, unavailable) rather than answers.")


class WidgetHistory(BaseModel):
    messages: list[WidgetMessage]
    last_id: str | None = Field(description="Id of the last message: open the stream after it.")
