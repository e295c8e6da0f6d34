"""Knowledge sources (what the owner fed a bot), their original bytes, and the chunks answers are built from."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin, TimestampMixin
from control_plane.models._base import TenantScoped


class KnowledgeSource(IdMixin, TenantScoped, TimestampMixin, Base):
    __tablename__ = "knowledge_sources"
    __table_args__ = (UniqueConstraint("bot_id", "content_hash"),)

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # text | faq | file | url
    title: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    content_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    filename: Mapped[str | None] = mapped_column(String(300), default=None)
    mime_type: Mapped[str | None] = mapped_column(String(120), default=None)
    original: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    options: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict, server_default="{}")
    extracted_text: Mapped[str | None] = mapped_column(Text, default=None, deferred=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    chunk_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    sync_interval_hours: Mapped[int | None] = mapped_column(Integer, default=None)


class KnowledgeChunk(IdMixin, TenantScoped, Base):
    __tablename__ = "knowledge_chunks"

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("knowledge_sources.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    position: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16), default="text")
    title: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(5), default=None)
    meta: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict, server_default="{}")
    embedding: Mapped[list[float] | None] = mapped_column(ARRAY(Float), default=None)
