"""Subscriptions, payments and the provider webhook events stored once each (the deduplication key)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin, TimestampMixin
from control_plane.models._base import TenantScoped


class Subscription(IdMixin, TenantScoped, TimestampMixin, Base):
    __tablename__ = "subscriptions"

    plan: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)  # trialing | active | past_due | canceled | expired
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    provider_ref: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None, index=True)


class Payment(IdMixin, TenantScoped, TimestampMixin, Base):
    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("provider", "provider_payment_id"),)

    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL"), index=True, default=None
    )
    provider: Mapped[str] = mapped_column(String(32))
    provider_payment_id: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), index=True)
    raw: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict, server_default="{}")


class PaymentEvent(IdMixin, Base):
    """A verified provider webhook, stored once (unique provider + event id) before it is processed."""

    __tablename__ = "payment_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, object]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
