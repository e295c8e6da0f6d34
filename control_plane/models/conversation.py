"""End customers per channel (chat users), conversations and messages, as ingested from the runtimes' events."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin
from control_plane.models._base import TenantScoped


class ChatUser(IdMixin, TenantScoped, Base):
    __tablename__ = "chat_users"
    __table_args__ = (UniqueConstraint("bot_id", "channel", "external_id"),)

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str | None] = mapped_column(String(5), default=None)
    is_reachable: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true", index=True)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class Conversation(IdMixin, TenantScoped, Base):
    __tablename__ = "conversations"

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    chat_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("chat_users.id", ondelete="CASCADE"), index=True, default=None
    )
    channel: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    last_message_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class Message(IdMixin, TenantScoped, Base):
    __tablename__ = "messages"

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    # The runtime's event id: ingesting the same event twice is a no-op.
    event_id: Mapped[str | None] = mapped_column(String(120), unique=True, default=None)
    direction: Mapped[str] = mapped_column(String(8))  # in | out
    text: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(5), default=None)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false", index=True)
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tokens_out: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    latency_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    delivery_status: Mapped[str | None] = mapped_column(String(16), default=None, index=True)
    sources: Mapped[list[object]] = mapped_column(JSONB, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
