"""Bots, their per-bot members and their settings (persona, messages, widget look, allowed origins)."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin, TimestampMixin
from control_plane.models._base import TenantScoped


def new_public_id() -> str:
    return "b_" + secrets.token_urlsafe(12)


class Bot(IdMixin, TenantScoped, TimestampMixin, Base):
    __tablename__ = "bots"

    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(5), default="en")
    welcome_message: Mapped[str] = mapped_column(Text, default="")
    fallback_message: Mapped[str] = mapped_column(Text, default="")
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true", index=True)
    strict: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_public_id)
    allowed_origins: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    avatar: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    avatar_mime: Mapped[str | None] = mapped_column(String(32), default=None)
    avatar_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    widget: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict, server_default="{}")
    ai_provider: Mapped[str] = mapped_column(String(32), default="auto", server_default="auto")


class BotMember(IdMixin, TenantScoped, TimestampMixin, Base):
    __tablename__ = "bot_members"
    __table_args__ = (UniqueConstraint("bot_id", "user_id"),)

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="viewer")
