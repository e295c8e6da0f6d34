"""The published retrieval artifact of each bot: which version the runtimes and the test console should load.

The artifact bytes live in Redis (``contract.artifact_key(bot_id, version)``); this row is the durable record of the
current version, so the console and a republish after a Redis restart agree on it. Rebuilds lock the row
(``SELECT ... FOR UPDATE``), which also serialises concurrent rebuilds of one bot.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin
from control_plane.models._base import TenantScoped


class KnowledgeArtifact(IdMixin, TenantScoped, Base):
    __tablename__ = "knowledge_artifacts"

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), unique=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    chunk_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    embedding_model: Mapped[str | None] = mapped_column(String(120), default=None)
    built_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
