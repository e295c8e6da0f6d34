"""The versioned contract between the control plane and the tenant runtimes: Redis key names and documents.

Both sides import this module; the runtime imports nothing else from the control plane. Documents are plain JSON
(dataclasses, no pydantic) so a runtime stays small. Channel credentials inside a config document are encrypted
with RUNTIME_SECRET_KEY: no plaintext token ever sits in Redis.

Data path: channel webhook → control plane verifies → ``inbound_stream(tenant)`` → runtime answers → channel API →
``EVENTS_STREAM`` → control plane stores.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

CONTRACT_VERSION = 1

# Consumer groups.
RUNTIME_GROUP = "runtime"
EVENTS_GROUP = "control-plane"


def prefix() -> str:
    """Key prefix shared by every process (REDIS_KEY_PREFIX; tests give each session its own)."""
    return os.environ.get("REDIS_KEY_PREFIX", "bf:")


def config_key(tenant_id: str) -> str:
    """JSON ``TenantConfig`` document of one tenant."""
    return f"{prefix()}tenant:{tenant_id}:config"


def config_channel() -> str:
    """Pub/sub channel: message ``"{tenant_id}:{version}"`` after each publish (may drop: runtimes also poll)."""
    return f"{prefix()}config-updates"


def inbound_stream(tenant_id: str) -> str:
    """Stream of ``InboundEvent`` entries (field ``data`` = JSON) for one tenant, read by group RUNTIME_GROUP."""
    return f"{prefix()}tenant:{tenant_id}:inbound"


def events_stream() -> str:
    """Stream of ``RuntimeEvent`` entries (field ``data`` = JSON) from every runtime to the control plane."""
    return f"{prefix()}events"


def dedupe_key(tenant_id: str, event_id: str) -> str:
    """SET NX marker so a duplicate delivery (e.g. Telegram resending an update) is processed once."""
    return f"{prefix()}tenant:{tenant_id}:seen:{event_id}"


def sent_key(tenant_id: str, event_id: str) -> str:
    """Written right after a reply is sent, before the ack: a re-claimed entry with this marker is not re-sent."""
    return f"{prefix()}tenant:{tenant_id}:sent:{event_id}"


def usage_key(tenant_id: str, day: str) -> str:
    """Messages counted today (UTC ``YYYYMMDD``) for the plan's daily limit."""
    return f"{prefix()}tenant:{tenant_id}:usage:{day}"


def artifact_key(bot_id: str, version: int) -> str:
    """Serialized retrieval artifact (chunks + lexical index + vectors) of one bot at one version."""
    return f"{prefix()}bot:{bot_id}:artifact:{version}"


def ready_key(tenant_id: str) -> str:
    """Hash written by a runtime once it serves: pid, host, config version, started_at."""
    return f"{prefix()}tenant:{tenant_id}:ready"


def lease_key(tenant_id: str) -> str:
    """Which host runs the tenant: value ``"{host_id}:{fencing_token}"`` with a TTL (RUNTIME_LEASE_TTL)."""
    return f"{prefix()}tenant:{tenant_id}:lease"


def fencing_counter_key(tenant_id: str) -> str:
    return f"{prefix()}tenant:{tenant_id}:fence"


def desired_runtimes_key() -> str:
    """Set of tenant ids that should have a running runtime (active plan, at least one enabled bot)."""
    return f"{prefix()}runtimes:desired"


def wake_channel() -> str:
    """Pub/sub channel carrying a tenant id whose idle runtime should start now (a message arrived)."""
    return f"{prefix()}runtimes:wake"


def host_key(host_id: str) -> str:
    """Heartbeat hash of a runtime host (expires when the host dies)."""
    return f"{prefix()}hosts:{host_id}"


def hosts_key() -> str:
    return f"{prefix()}hosts"


def runtime_stats_key(tenant_id: str) -> str:
    """Hash of the runtime's state as its host sees it: state, host, pid, uptime, restarts, rss, last_error."""
    return f"{prefix()}tenant:{tenant_id}:stats"


def log_request_channel(host_id: str) -> str:
    return f"{prefix()}hosts:{host_id}:log-requests"


def log_reply_key(request_id: str) -> str:
    return f"{prefix()}log-replies:{request_id}"


def control_stream(host_id: str) -> str:
    """Operator commands to one host (start/stop/restart a tenant)."""
    return f"{prefix()}hosts:{host_id}:control"


@dataclass(slots=True)
class ChannelConfig:
    kind: str  # telegram | whatsapp | instagram | widget
    credentials: str = ""  # Fernet token (RUNTIME_SECRET_KEY) of a JSON object, "" for the widget
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"mode": "polling", "username": "shop_bot"}


@dataclass(slots=True)
class BotConfig:
    id: str
    public_id: str
    name: str
    language: str = "en"
    instructions: str = ""
    welcome_message: str = ""
    fallback_message: str = ""
    strict: bool = True
    is_enabled: bool = True
    ai_provider: str = "auto"  # auto | gemini | openai_compat | offline
    artifact_version: int = 0
    channels: list[ChannelConfig] = field(default_factory=list)


@dataclass(slots=True)
class PlanLimits:
    code: str = "free"
    messages_per_day: int | None = 100
    model_tier: str = "flash"
    channels: list[str] = field(default_factory=lambda: ["telegram", "widget"])


@dataclass(slots=True)
class TenantConfig:
    tenant_id: str
    version: int
    status: str = "active"  # active | suspended | lapsed
    plan: PlanLimits = field(default_factory=PlanLimits)
    bots: list[BotConfig] = field(default_factory=list)
    # Encrypted provider settings, e.g. {"gemini": <token of {"api_key", "model"}>}; empty = offline answerer.
    providers: dict[str, str] = field(default_factory=dict)
    contract: int = CONTRACT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> TenantConfig:
        data = json.loads(raw)
        plan = PlanLimits(**data.get("plan", {}))
        bots = [
            BotConfig(**{**bot, "channels": [ChannelConfig(**ch) for ch in bot.get("channels", [])]})
            for bot in data.get("bots", [])
        ]
        return cls(
            tenant_id=data["tenant_id"],
            version=int(data["version"]),
            status=data.get("status", "active"),
            plan=plan,
            bots=bots,
            providers=data.get("providers", {}),
            contract=int(data.get("contract", CONTRACT_VERSION)),
        )

    def bot(self, bot_id: str) -> BotConfig | None:
        return next((bot for bot in self.bots if bot.id == bot_id), None)


@dataclass(slots=True)
class InboundEvent:
    """One entry of a tenant's inbound stream.

    kind: ``telegram.update`` (payload = the Update JSON), ``widget.message`` (payload = {visitor_id, text,
    language, reply_to}), ``whatsapp.message`` / ``instagram.message`` (payload = the webhook entry),
    ``broadcast`` (payload = {broadcast_id, delivery_id, chat_external_id, html}).
    event_id is unique per source (e.g. ``tg:{bot_id}:{update_id}``) and makes duplicates a no-op.
    """

    event_id: str
    bot_id: str
    kind: str
    payload: dict[str, Any]
    received_at: float

    def to_fields(self) -> dict[str, str]:
        return {"data": json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))}

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes | str]) -> InboundEvent:
        raw = fields.get(b"data", fields.get("data"))
        assert raw is not None
        return cls(**json.loads(raw))


@dataclass(slots=True)
class RuntimeEvent:
    """One entry of the events stream.

    type: ``message.in``, ``message.out`` (text, latency_ms, provider, tokens_in, tokens_out, fallback, sources,
    delivery: sent | failed | blocked), ``broadcast.delivery`` (delivery_id, status, error), ``chat.unreachable``,
    ``runtime.error``. ``event_id`` makes ingestion idempotent.
    """

    event_id: str
    type: str
    tenant_id: str
    bot_id: str
    channel: str
    chat: dict[str, Any]  # {external_id, name, username, language}
    data: dict[str, Any]
    at: float

    def to_fields(self) -> dict[str, str]:
        return {"data": json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))}

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes | str]) -> RuntimeEvent:
        raw = fields.get(b"data", fields.get("data"))
        assert raw is not None
        return cls(**json.loads(raw))
