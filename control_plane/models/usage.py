"""AI token usage per tenant, bot, day, provider and model (one row per combination, incremented in place)."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin
from control_plane.models._base import TenantScoped


class TokenUsage(IdMixin, TenantScoped, Base):
    __tablename__ = "token_usage"
    __table_args__ = (UniqueConstraint("tenant_id", "bot_id", "day", "provider", "model"),)

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(120), default="")
    requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
