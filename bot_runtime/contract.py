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


def config_channel(tenant_id: str) -> str:
    """Pub/sub channel of one tenant: ``"{tenant_id}:{version}"`` after each publish (may drop: runtimes also poll).

    One channel per tenant, so a publish reaches the one runtime it concerns, not every runtime on every host."""
    return f"{prefix()}tenant:{tenant_id}:config-updates"


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
    ``runtime.error``. ``event_id`` makes ingestion idempotent. A ``message.out`` the guardrails refused also
    carries :func:`blocked_fields` (the control plane writes it to the abuse log); a ``message.in`` over the
    per-chat rate limit carries ``rate_limited: true``.
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


def blocked_fields(reason: str, provider: str | None, question: str) -> dict[str, Any]:
    """``message.out`` data of a guardrail refusal: ``blocked`` (the reason), ``blocked_direction`` (``in``: the
    customer's message was refused, ``out``: the answer was) and ``question`` (the customer's text)."""
    return {
        "blocked": str(reason),
        "blocked_direction": "in" if provider == "guardrails" else "out",
        "question": question,
    }


# ---------------------------------------------------------------------------------------------------------------
# Runtime hosts and lifecycle (added with the host agent). Both sides read these; see bot_runtime/host/agent.py.


def config_version_key(tenant_id: str) -> str:
    """Counter the control plane INCRs to allocate the next config version; runtimes poll it (cheap GET)."""
    return f"{prefix()}tenant:{tenant_id}:config-version"


def idle_key(tenant_id: str) -> str:
    """Set by a runtime that exited for lack of traffic; ``wake_tenant`` deletes it. Hosts skip marked tenants."""
    return f"{prefix()}tenant:{tenant_id}:idle"


def hold_key(tenant_id: str) -> str:
    """Operator stop: while set, no host starts the tenant (``botfactory runtimes start`` deletes it)."""
    return f"{prefix()}tenant:{tenant_id}:hold"


def runtimes_known_key() -> str:
    """Set of tenant ids that have a ``runtime_stats_key`` hash, so the console lists stopped runtimes too."""
    return f"{prefix()}runtimes:known"


def control_reply_key(request_id: str) -> str:
    """List the host LPUSHes a ``{"ok", "message"}`` JSON answer to, for the operator who sent the command."""
    return f"{prefix()}control-replies:{request_id}"


def dead_letter_stream(tenant_id: str) -> str:
    """Inbound entries given up on (no handler, or failing on every try), kept for inspection and replay."""
    return f"{prefix()}tenant:{tenant_id}:dead-letter"


def outbox_stream(tenant_id: str) -> str:
    """Diagnostics channel: the ``test.echo`` handler (bot_runtime/handlers/echo.py) writes its replies here."""
    return f"{prefix()}tenant:{tenant_id}:outbox"


def limit_notice_key(tenant_id: str, day: str, chat: str) -> str:
    """SET NX marker so a chat over the daily message limit gets the notice once per UTC day."""
    return f"{prefix()}tenant:{tenant_id}:limit-notice:{day}:{chat}"


# Runtime states in ``runtime_stats_key`` (field ``state``). The hash's other fields: host, pid, uptime (s), restarts,
# rss (bytes, VmRSS), last_error, exit_status, next_retry_at (epoch s, crash-looping), reason, updated_at (epoch s).
RUNTIME_STATES = ("starting", "running", "stopping", "stopped", "idle", "exited", "crash-looping")

# Runtime exit codes the host agent tells apart (anything else is a crash).
EXIT_IDLE = 0  # no traffic for RUNTIME_IDLE_SECONDS; ``idle_key`` is set
EXIT_FATAL = 1
EXIT_LEASE_LOST = 3  # the tenant's lease is gone or carries another fencing token
EXIT_ORPHANED = 4  # the supervisord that started us died


@dataclass(slots=True)
class HostCommand:
    """One operator command on ``control_stream(host_id)``: command = start | stop | restart."""

    command: str
    tenant_id: str
    request_id: str = ""
    at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        return {"data": json.dumps(asdict(self), separators=(",", ":"))}

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes | str]) -> HostCommand:
        raw = fields.get(b"data", fields.get("data"))
        assert raw is not None
        return cls(**json.loads(raw))


@dataclass(slots=True)
class LogRequest:
    """Published on ``log_request_channel(host_id)``; the host LPUSHes a ``LogReply`` JSON on ``log_reply_key``."""

    request_id: str
    tenant_id: str
    lines: int = 100
    stream: str = "stderr"  # stderr (structured logs) | stdout

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> LogRequest:
        return cls(**json.loads(raw))


@dataclass(slots=True)
class LogReply:
    request_id: str
    tenant_id: str
    host_id: str
    stream: str
    lines: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> LogReply:
        return cls(**json.loads(raw))


# ---------------------------------------------------------------------------------------------------------------
# Website widget (added with the widget channel). See control_plane/widget and bot_runtime/channels/widget.py.

# A visitor's conversation is kept this long after its last message (so it survives reloads and return visits),
# and trimmed to about this many entries (the widget shows them all; the runtime reads the last few as history).
WIDGET_CONVERSATION_TTL = 30 * 24 * 3600
WIDGET_CONVERSATION_MAXLEN = 200


def widget_conversation_stream(tenant_id: str, bot_id: str, visitor_id: str) -> str:
    """One widget visitor's conversation with one bot, oldest first; the SSE endpoint streams it, history reads it.

    Fields of an entry: ``role`` (``visitor``: XADDed by the control plane when it accepts a message; ``bot``:
    XADDed by the runtime as the reply), ``text``, ``at`` (epoch seconds), ``client_message_id`` (visitor entries)
    or ``reply_to`` (bot entries: the client_message_id answered), ``event_id`` (bot entries: the inbound event
    answered), ``notice`` (bot entries that are a notice, e.g. ``limit`` or ``unavailable``, not an answer).
    Every writer trims it (``MAXLEN ~ WIDGET_CONVERSATION_MAXLEN``) and renews its TTL (WIDGET_CONVERSATION_TTL).
    """
    return f"{prefix()}tenant:{tenant_id}:widget:{bot_id}:{visitor_id}"
