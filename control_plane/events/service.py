"""What runtime events mean for the database: parse and validate entries, then ingest a whole batch.

``ingest`` flushes into the caller's transaction and never commits (the consumer commits, then acks). It is
idempotent: message events already stored (same event_id) are dropped before anything is written, so a batch
delivered twice, e.g. after a crash between commit and ack, changes nothing the second time.

Rules:
- A chat user is unique per (bot, channel, external_id); events refresh its name, username and language (blank
  values keep the stored ones) and last_seen_at. A customer message makes the chat reachable again;
  ``chat.unreachable``, a ``blocked`` delivery or a ``blocked`` broadcast makes it unreachable.
- One open conversation per chat user: a message continues the latest conversation unless the previous message
  is more than the idle gap (EVENTS_CONVERSATION_IDLE_HOURS, default 12 h) older, then a new one starts.
- ``message.out`` stores provider, tokens, latency, sources and delivery status; a fallback answer also flags the
  customer message it answers (analytics reads "unanswered questions" from inbound messages), and answers that
  called a model add to the day's ``token_usage`` row.
- ``broadcast.delivery`` changes a delivery's status and moves the broadcast's delivered/failed counters only
  when the status actually changes, so each delivery is counted once however often its event arrives. ``sent`` is
  final: a later report cannot take back a message the chat already received.
- A ``message.out`` the guardrails refused (``blocked`` = the reason, see ``contract.blocked_fields``) also writes
  an abuse log row (reason, direction, the customer's text), keyed by the event id so it is written once.
- ``runtime.error`` becomes a log line and an audit row on the tenant (one per bot and error text per batch).
- Poison entries (unparseable, invalid, or naming a bot that no longer exists) are reported back, not raised:
  the consumer acks and dead-letters them so they never block the stream.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime.contract import RuntimeEvent
from control_plane.events import repository
from control_plane.events.repository import ChatKey

log = logging.getLogger("control_plane.events")

Entry = tuple[str, dict[Any, Any]]  # (stream entry id, fields)

MESSAGE_IN = "message.in"
MESSAGE_OUT = "message.out"
BROADCAST_DELIVERY = "broadcast.delivery"
CHAT_UNREACHABLE = "chat.unreachable"
RUNTIME_ERROR = "runtime.error"
EVENT_TYPES = frozenset({MESSAGE_IN, MESSAGE_OUT, BROADCAST_DELIVERY, CHAT_UNREACHABLE, RUNTIME_ERROR})
MESSAGE_TYPES = frozenset({MESSAGE_IN, MESSAGE_OUT})
CHAT_TYPES = MESSAGE_TYPES | {CHAT_UNREACHABLE}

# Answers that cost no model call (same set as the test console's): no token_usage row for them.
NO_PROVIDER_CALL = frozenset({"offline", "guardrails"})

# Broadcast delivery statuses and the counter each one counts in.
DELIVERED_STATUSES = frozenset({"sent", "delivered"})
FAILED_STATUSES = frozenset({"failed", "blocked"})
DELIVERY_STATUSES = DELIVERED_STATUSES | FAILED_STATUSES | {"pending"}

# Column limits (see control_plane/models/conversation.py).
EVENT_ID_MAX = 120
EXTERNAL_ID_MAX = 200
CHANNEL_MAX = 16
NAME_MAX = 200
PROVIDER_MAX = 32
MODEL_MAX = 120
STATUS_MAX = 16
INT32_MAX = 2**31 - 1
ERROR_TEXT_MAX = 2000
SOURCES_MAX = 50
ABUSE_REASON_MAX = 32
ABUSE_TEXT_MAX = 2000


class PoisonEvent(Exception):
    """An entry that can never be ingested: acked and dead-lettered, with this message as the reason."""


@dataclass(slots=True)
class Poison:
    entry_id: str
    reason: str
    tenant_id: str | None = None
    bot_id: str | None = None


@dataclass(slots=True)
class IngestReport:
    """What one batch did (for logs and tests)."""

    entries: int = 0
    duplicates: int = 0
    messages: int = 0
    chat_users: int = 0
    conversations_started: int = 0
    reachability_changed: int = 0
    deliveries_changed: int = 0
    runtime_errors: int = 0
    abuse_logged: int = 0
    poison: list[Poison] = field(default_factory=list)

    def as_log(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "duplicates": self.duplicates,
            "messages": self.messages,
            "chat_users": self.chat_users,
            "conversations_started": self.conversations_started,
            "reachability_changed": self.reachability_changed,
            "deliveries_changed": self.deliveries_changed,
            "runtime_errors": self.runtime_errors,
            "abuse_logged": self.abuse_logged,
            "poison": len(self.poison),
        }


@dataclass(slots=True, eq=False)
class Incoming:
    """One validated event and what ingestion works out for it."""

    entry_id: str
    event: RuntimeEvent
    key: str  # event id as stored (hashed when longer than the column)
    tenant_id: uuid.UUID
    bot_id: uuid.UUID
    at: datetime
    chat: ChatKey | None = None
    chat_user_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def data(self) -> dict[str, Any]:
        return self.event.data


# -- parsing ----------------------------------------------------------------------------------------------------


def stored_event_id(event_id: str) -> str:
    """The event id as the messages table keeps it: itself, or a stable hash when it is longer than the column."""
    if len(event_id) <= EVENT_ID_MAX:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def _clean(value: Any, limit: int | None = None) -> str:
    # PostgreSQL text cannot hold NUL characters.
    text = value.replace("\x00", "") if isinstance(value, str) else ""
    return text[:limit] if limit is not None else text


def _language(value: Any) -> str | None:
    """A short language tag for the 5-character columns: ``en``, ``pt-br``; ``zh-hans`` becomes ``zh``."""
    if not isinstance(value, str):
        return None
    tag = value.strip().lower().replace("_", "-")
    if len(tag) > 5:
        tag = tag.split("-", 1)[0][:5]
    return tag or None


def _int(value: Any, *, default: int | None = 0) -> int | None:
    if isinstance(value, bool) or value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return max(0, min(number, INT32_MAX))


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise PoisonEvent(f"{what} is not a UUID: {str(value)[:80]!r}") from None


def parse_entry(entry_id: str, fields: dict[Any, Any]) -> Incoming:
    """Decode and validate one stream entry; raises PoisonEvent when it can never be ingested."""
    if not fields:
        raise PoisonEvent("entry has no fields (trimmed from the stream)")
    try:
        event = RuntimeEvent.from_fields(fields)
    except Exception as exc:  # any decoding failure makes the entry poison, whatever its shape
        raise PoisonEvent(f"unparseable: {exc!r}"[:300]) from None
    if not isinstance(event.event_id, str) or not event.event_id or "\x00" in event.event_id:
        raise PoisonEvent("event_id is missing or invalid")
    if event.type not in EVENT_TYPES:
        raise PoisonEvent(f"unknown event type {str(event.type)[:40]!r}")
    if not isinstance(event.data, dict) or not isinstance(event.chat, dict):
        raise PoisonEvent("data and chat must be objects")
    if (
        isinstance(event.at, bool)
        or not isinstance(event.at, int | float)
        or not math.isfinite(event.at)
        or event.at < 0
    ):
        raise PoisonEvent(f"bad timestamp {str(event.at)[:40]!r}")
    incoming = Incoming(
        entry_id=entry_id,
        event=event,
        key=stored_event_id(event.event_id),
        tenant_id=_uuid(event.tenant_id, "tenant_id"),
        bot_id=_uuid(event.bot_id, "bot_id"),
        at=datetime.fromtimestamp(event.at, UTC),
    )
    if event.type in CHAT_TYPES:
        channel, external_id = event.channel, event.chat.get("external_id")
        if not isinstance(channel, str) or not channel or len(channel) > CHANNEL_MAX:
            raise PoisonEvent(f"bad channel {str(channel)[:40]!r}")
        if isinstance(external_id, int) and not isinstance(external_id, bool):
            external_id = str(external_id)
        if not isinstance(external_id, str) or not external_id or len(external_id) > EXTERNAL_ID_MAX:
            raise PoisonEvent("chat.external_id is missing or too long")
        incoming.chat = (incoming.bot_id, channel, _clean(external_id))
    if event.type == BROADCAST_DELIVERY:
        _uuid(event.data.get("delivery_id"), "delivery_id")
        if event.data.get("status") not in DELIVERY_STATUSES:
            raise PoisonEvent(f"unknown delivery status {str(event.data.get('status'))[:40]!r}")
    return incoming


# -- ingestion --------------------------------------------------------------------------------------------------


async def ingest(db: AsyncSession, entries: Sequence[Entry], *, idle_gap: timedelta) -> IngestReport:
    """Store a batch of events-stream entries in the caller's transaction (flushes, never commits)."""
    report = IngestReport(entries=len(entries))
    parsed: list[Incoming] = []
    seen: set[str] = set()
    for entry_id, fields in entries:
        try:
            incoming = parse_entry(entry_id, fields)
        except PoisonEvent as exc:
            report.poison.append(Poison(entry_id, str(exc)))
            continue
        if incoming.key in seen:  # the same event twice in one batch
            report.duplicates += 1
            continue
        seen.add(incoming.key)
        parsed.append(incoming)

    tenants = await repository.bot_tenants(db, {incoming.bot_id for incoming in parsed})
    valid: list[Incoming] = []
    for incoming in parsed:
        owner = tenants.get(incoming.bot_id)
        if owner is None:
            report.poison.append(_poison(incoming, "bot no longer exists"))
        elif owner != incoming.tenant_id:
            report.poison.append(_poison(incoming, "bot belongs to another tenant"))
        else:
            valid.append(incoming)

    known = await repository.existing_event_ids(db, [i.key for i in valid if i.type in MESSAGE_TYPES])
    fresh = [incoming for incoming in valid if incoming.key not in known]
    report.duplicates += len(valid) - len(fresh)

    await _chat_users(db, fresh, report)
    message_events = [incoming for incoming in fresh if incoming.type in MESSAGE_TYPES]
    await _conversations(db, message_events, idle_gap, report)
    await _messages(db, message_events, report)
    await _abuse_log(db, message_events, report)
    await _broadcast_deliveries(db, [i for i in fresh if i.type == BROADCAST_DELIVERY], report)
    await _runtime_errors(db, [i for i in fresh if i.type == RUNTIME_ERROR], report)
    return report


def _poison(incoming: Incoming, reason: str) -> Poison:
    return Poison(incoming.entry_id, reason, str(incoming.tenant_id), str(incoming.bot_id))


@dataclass(slots=True)
class _ChatPlan:
    tenant_id: uuid.UUID
    first_at: datetime
    seen_at: datetime | None = None
    name: str = ""
    username: str = ""
    language: str | None = None
    reachable: bool | None = None


def _reachability(incoming: Incoming) -> bool | None:
    """What an event says about whether the bot can still write to the chat (None: nothing)."""
    if incoming.type == MESSAGE_IN:
        return True
    if incoming.type == CHAT_UNREACHABLE:
        return False
    if incoming.type == MESSAGE_OUT:
        delivery = incoming.data.get("delivery")
        return {"sent": True, "blocked": False}.get(delivery) if isinstance(delivery, str) else None
    return None


async def _chat_users(db: AsyncSession, events: list[Incoming], report: IngestReport) -> None:
    plans: dict[ChatKey, _ChatPlan] = {}
    for incoming in events:
        if incoming.chat is None:
            continue
        plan = plans.get(incoming.chat)
        if plan is None:
            plan = plans[incoming.chat] = _ChatPlan(tenant_id=incoming.tenant_id, first_at=incoming.at)
        plan.first_at = min(plan.first_at, incoming.at)
        if incoming.type in MESSAGE_TYPES:
            plan.seen_at = incoming.at if plan.seen_at is None else max(plan.seen_at, incoming.at)
        chat = incoming.event.chat
        # Stream order: the latest non-blank value wins.
        plan.name = _clean(chat.get("name"), NAME_MAX) or plan.name
        plan.username = _clean(chat.get("username"), NAME_MAX) or plan.username
        language = _language(chat.get("language"))
        if language is None and incoming.type == MESSAGE_IN:
            language = _language(incoming.data.get("language"))
        plan.language = language or plan.language
        reachable = _reachability(incoming)
        if reachable is not None:
            plan.reachable = reachable
    if not plans:
        return

    def row(key: ChatKey, plan: _ChatPlan) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "tenant_id": plan.tenant_id,
            "bot_id": key[0],
            "channel": key[1],
            "external_id": key[2],
            "name": plan.name,
            "username": plan.username,
            "language": plan.language,
            "is_reachable": plan.reachable is not False,
            "first_seen_at": plan.first_at,
            "last_seen_at": plan.seen_at or plan.first_at,
        }

    ids: dict[ChatKey, uuid.UUID] = {}
    # Chats with a message move last_seen_at; chats that only became unreachable do not.
    for seen in (True, False):
        rows = [row(key, plan) for key, plan in plans.items() if (plan.seen_at is not None) is seen]
        ids.update(await repository.upsert_chat_users(db, rows, seen=seen))
    report.chat_users = len(ids)
    changes = {ids[key]: plan.reachable for key, plan in plans.items() if plan.reachable is not None}
    report.reachability_changed += await repository.set_reachability(db, changes)
    for incoming in events:
        if incoming.chat is not None:
            incoming.chat_user_id = ids[incoming.chat]


@dataclass(slots=True)
class _Conversation:
    id: uuid.UUID
    last_message_at: datetime
    is_new: bool
    row: dict[str, Any] | None = None


async def _conversations(db: AsyncSession, events: list[Incoming], idle_gap: timedelta, report: IngestReport) -> None:
    by_chat_user: dict[uuid.UUID, list[Incoming]] = defaultdict(list)
    for incoming in events:
        assert incoming.chat_user_id is not None
        by_chat_user[incoming.chat_user_id].append(incoming)
    latest = await repository.latest_conversations(db, list(by_chat_user))
    new_rows: list[dict[str, Any]] = []
    touched: dict[uuid.UUID, datetime] = {}
    for chat_user_id, chat_events in by_chat_user.items():
        found = latest.get(chat_user_id)
        current = _Conversation(found.id, found.last_message_at, is_new=False) if found else None
        for incoming in chat_events:  # stream order
            if current is None or incoming.at - current.last_message_at > idle_gap:
                assert incoming.chat is not None
                row = {
                    "id": uuid.uuid4(),
                    "tenant_id": incoming.tenant_id,
                    "bot_id": incoming.bot_id,
                    "chat_user_id": chat_user_id,
                    "channel": incoming.chat[1],
                    "started_at": incoming.at,
                    "last_message_at": incoming.at,
                }
                new_rows.append(row)
                current = _Conversation(row["id"], incoming.at, is_new=True, row=row)
            elif incoming.at > current.last_message_at:
                current.last_message_at = incoming.at
                if current.row is not None:
                    current.row["last_message_at"] = incoming.at
                else:
                    touched[current.id] = incoming.at
            incoming.conversation_id = current.id
    await repository.insert_conversations(db, new_rows)
    await repository.touch_conversations(db, touched)
    report.conversations_started = len(new_rows)


def _sources(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [_clean(str(item), 200) for item in value[:SOURCES_MAX] if isinstance(item, str | int)]


def _message_row(incoming: Incoming) -> dict[str, Any]:
    data = incoming.data
    out = incoming.type == MESSAGE_OUT
    provider = _clean(data.get("provider"), PROVIDER_MAX) or None
    return {
        "id": uuid.uuid4(),
        "tenant_id": incoming.tenant_id,
        "bot_id": incoming.bot_id,
        "conversation_id": incoming.conversation_id,
        "event_id": incoming.key,
        "direction": "out" if out else "in",
        "text": _clean(data.get("text")),
        "language": _language(data.get("language")),
        "fallback": bool(data.get("fallback")) if out else False,
        "provider": provider if out else None,
        "tokens_in": _int(data.get("tokens_in")) if out else 0,
        "tokens_out": _int(data.get("tokens_out")) if out else 0,
        "latency_ms": _int(data.get("latency_ms"), default=None) if out else None,
        "delivery_status": (_clean(data.get("delivery"), STATUS_MAX) or None) if out else None,
        "sources": _sources(data.get("sources")) if out else [],
        "created_at": incoming.at,
    }


def _answered_event_ids(incoming: Incoming) -> list[str]:
    """Stored ids of the customer messages an answer may be answering.

    The runtime names an entry's events ``{inbound event id}:{type}:{emit index}``, so the inbound message of the
    same entry is ``{inbound}:message.in:{k}`` for some k below the answer's index; matching exact ids keeps the
    update on the unique index (and works when the pair was split across two batches).
    """
    head, sep, index = incoming.event.event_id.rpartition(f":{MESSAGE_OUT}:")
    if not sep or not index.isdigit():
        return []
    return [stored_event_id(f"{head}:{MESSAGE_IN}:{k}") for k in range(min(int(index), 10))]


async def _messages(db: AsyncSession, events: list[Incoming], report: IngestReport) -> None:
    if not events:
        return
    inserted = await repository.insert_messages(db, [_message_row(incoming) for incoming in events])
    report.messages = len(inserted)
    answers = [i for i in events if i.type == MESSAGE_OUT and i.key in inserted]
    fallback_ids = [key for i in answers if i.data.get("fallback") for key in _answered_event_ids(i)]
    await repository.mark_inbound_fallback(db, fallback_ids)

    usage: dict[tuple[uuid.UUID, uuid.UUID, Any, str, str], list[int]] = {}
    for incoming in answers:
        provider = _clean(incoming.data.get("provider"), PROVIDER_MAX)
        if not provider or provider in NO_PROVIDER_CALL:
            continue
        model = _clean(incoming.data.get("model"), MODEL_MAX)
        key = (incoming.tenant_id, incoming.bot_id, incoming.at.date(), provider, model)
        totals = usage.setdefault(key, [0, 0, 0])
        totals[0] += 1
        totals[1] += _int(incoming.data.get("tokens_in")) or 0
        totals[2] += _int(incoming.data.get("tokens_out")) or 0
    await repository.add_token_usage(
        db,
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant_id,
                "bot_id": bot_id,
                "day": day,
                "provider": provider,
                "model": model,
                "requests": requests,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
            }
            for (tenant_id, bot_id, day, provider, model), (requests, tokens_in, tokens_out) in usage.items()
        ],
    )


async def _abuse_log(db: AsyncSession, events: list[Incoming], report: IngestReport) -> None:
    """An abuse log row per guardrail refusal on a channel (idempotent: unique on the event id)."""
    rows = []
    for incoming in events:
        reason = incoming.data.get("blocked") if incoming.type == MESSAGE_OUT else None
        if not isinstance(reason, str) or not reason:
            continue
        assert incoming.chat is not None
        direction = incoming.data.get("blocked_direction")
        rows.append(
            {
                "id": uuid.uuid4(),
                "tenant_id": incoming.tenant_id,
                "bot_id": incoming.bot_id,
                "conversation_id": incoming.conversation_id,
                "channel": incoming.chat[1],
                "chat_external_id": incoming.chat[2],
                "direction": direction if direction in ("in", "out") else "in",
                "reason": _clean(reason, ABUSE_REASON_MAX),
                "matched": _clean(incoming.data.get("matched"), NAME_MAX) or None,
                "text": _clean(incoming.data.get("question"), ABUSE_TEXT_MAX),
                "event_id": incoming.key,
                "created_at": incoming.at,
            }
        )
    report.abuse_logged = await repository.insert_abuse_rows(db, rows)


def _bucket(status: str) -> int:
    """0: counted as delivered, 1: counted as failed, -1: not counted."""
    return 0 if status in DELIVERED_STATUSES else 1 if status in FAILED_STATUSES else -1


async def _broadcast_deliveries(db: AsyncSession, events: list[Incoming], report: IngestReport) -> None:
    if not events:
        return
    latest: dict[uuid.UUID, Incoming] = {}
    for incoming in events:  # the last report of a delivery in the batch wins
        latest[uuid.UUID(str(incoming.data["delivery_id"]))] = incoming
    rows = await repository.lock_deliveries(db, list(latest))
    changes: list[tuple[uuid.UUID, str, str | None]] = []
    deltas: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])
    blocked: dict[uuid.UUID, bool] = {}
    for delivery_id, incoming in latest.items():
        row = rows.get(delivery_id)
        if row is None or row.tenant_id != incoming.tenant_id:
            # The broadcast was deleted meanwhile (or the id is wrong): nothing to count.
            log.warning(
                "events.broadcast.delivery_unknown",
                extra={"tenant_id": str(incoming.tenant_id), "delivery_id": str(delivery_id)},
            )
            continue
        status = str(incoming.data["status"])
        if status == row.status or row.status in DELIVERED_STATUSES:
            continue
        error = _clean(incoming.data.get("error"), ERROR_TEXT_MAX) or None
        changes.append((delivery_id, status, error))
        old, new = _bucket(row.status), _bucket(status)
        if old >= 0:
            deltas[row.broadcast_id][old] -= 1
        if new >= 0:
            deltas[row.broadcast_id][new] += 1
        if status == "blocked":
            blocked[row.chat_user_id] = False
    await repository.update_deliveries(db, changes)
    await repository.bump_broadcast_counters(
        db, {broadcast_id: (d[0], d[1]) for broadcast_id, d in deltas.items() if d != [0, 0]}
    )
    report.reachability_changed += await repository.set_reachability(db, blocked)
    report.deliveries_changed = len(changes)


async def _runtime_errors(db: AsyncSession, events: list[Incoming], report: IngestReport) -> None:
    if not events:
        return
    # One audit row per (bot, error) per batch: a bot failing on every message must not flood the audit log.
    groups: dict[tuple[uuid.UUID, str], list[Incoming]] = defaultdict(list)
    for incoming in events:
        error = _clean(str(incoming.data.get("error", "")), ERROR_TEXT_MAX)
        log.warning(
            "events.runtime.error",
            extra={
                "tenant_id": str(incoming.tenant_id),
                "bot_id": str(incoming.bot_id),
                "channel": incoming.event.channel,
                "event_id": incoming.event.event_id,
                "error": error,
            },
        )
        groups[(incoming.bot_id, error)].append(incoming)
    firsts = {group[0].event.event_id: group for group in groups.values()}
    since = min(incoming.at for incoming in events) - timedelta(seconds=1)
    recorded = await repository.recorded_runtime_errors(db, list(firsts), since=since)
    rows = []
    for event_id, group in firsts.items():
        if event_id in recorded:
            continue
        first = group[0]
        data = {
            "event_id": event_id,
            "channel": _clean(first.event.channel, CHANNEL_MAX),
            "error": _clean(str(first.data.get("error", "")), ERROR_TEXT_MAX),
            "count": len(group),
            "last_at": group[-1].at.isoformat(),
        }
        rows.append(
            {
                "id": uuid.uuid4(),
                "tenant_id": first.tenant_id,
                "actor_user_id": None,
                "action": repository.RUNTIME_ERROR_ACTION,
                "target_type": "bot",
                "target_id": str(first.bot_id),
                "data": data,
                "ip": "",
                "created_at": first.at,
            }
        )
    await repository.insert_audit_rows(db, rows)
    report.runtime_errors = len(events)
