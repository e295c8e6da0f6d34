"""The abuse log: messages the guardrails refused (inbound or outbound), shown to the bot's owner and the admin."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin
from control_plane.models._base import TenantScoped


class AbuseLogEntry(IdMixin, TenantScoped, Base):
    __tablename__ = "abuse_log"

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True, default=None
    )
    channel: Mapped[str] = mapped_column(String(16))  # console | telegram | widget | ...
    chat_external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    direction: Mapped[str] = mapped_column(String(8), default="in")  # in: the customer's message; out: the answer
    reason: Mapped[str] = mapped_column(String(32), index=True)  # GuardReason value or "provider_safety"
    matched: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str] = mapped_column(Text, default="")
    # The runtime event a channel's refusal came from (stored like messages.event_id); None for the test console.
    # Unique so a redelivered event writes its row once.
    event_id: Mapped[str | None] = mapped_column(String(120), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
