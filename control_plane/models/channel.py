"""Channel connections (Telegram, WhatsApp, Instagram, widget) with credentials encrypted at rest."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base, IdMixin, TimestampMixin
from control_plane.models._base import TenantScoped


class ChannelConnection(IdMixin, TenantScoped, TimestampMixin, Base):
    __tablename__ = "channel_connections"
    # The fingerprint is an HMAC of the credential, so "token already used by another bot" is checkable
    # without ever storing the token in plaintext.
    __table_args__ = (UniqueConstraint("kind", "credential_fingerprint"), UniqueConstraint("bot_id", "kind"))

    bot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # telegram | whatsapp | instagram
    credentials_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    credential_fingerprint: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(200), default="")
    display_name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(32), default="connected", index=True)
    settings: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict, server_default="{}")
