"""Every SQLAlchemy model, imported here so Alembic's autogenerate and ``alembic check`` see them all."""

from control_plane.kit.db import Base
from control_plane.models._base import Role, TenantScoped
from control_plane.models.abuse import AbuseLogEntry
from control_plane.models.api_key import ApiKey
from control_plane.models.audit import AuditLog
from control_plane.models.billing import Payment, PaymentEvent, Subscription
from control_plane.models.bot import Bot, BotMember
from control_plane.models.broadcast import Broadcast, BroadcastDelivery
from control_plane.models.channel import ChannelConnection
from control_plane.models.conversation import ChatUser, Conversation, Message
from control_plane.models.knowledge import KnowledgeChunk, KnowledgeSource
from control_plane.models.knowledge_artifact import KnowledgeArtifact
from control_plane.models.notification import Notification
from control_plane.models.runtime_outbox import RuntimeConfigOutbox
from control_plane.models.tenant import Tenant, TenantMember
from control_plane.models.usage import TokenUsage
from control_plane.models.user import EmailToken, OutboxEmail, User, UserSession

__all__ = [
    "AbuseLogEntry",
    "ApiKey",
    "AuditLog",
    "Base",
    "Bot",
    "BotMember",
    "Broadcast",
    "BroadcastDelivery",
    "ChannelConnection",
    "ChatUser",
    "Conversation",
    "EmailToken",
    "KnowledgeArtifact",
    "KnowledgeChunk",
    "KnowledgeSource",
    "Message",
    "Notification",
    "OutboxEmail",
    "Payment",
    "PaymentEvent",
    "RuntimeConfigOutbox",
    "Role",
    "Subscription",
    "Tenant",
    "TenantMember",
    "TenantScoped",
    "TokenUsage",
    "User",
    "UserSession",
]
