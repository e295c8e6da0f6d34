"""SQL for event ingestion (bulk statements over a whole batch) and the token usage query analytics reads.

Ingestion runs outside any tenant request: the consumer is a platform process that writes rows for every tenant,
taking each row's tenant from its bot. Inserts go through SQLAlchemy's multi-row INSERT; bulk updates join an
``unnest`` of arrays, so a batch costs a fixed handful of round trips whatever its size.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, select, text
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.kit.tenancy import TenantContext, scoped
from control_plane.models import (
    AbuseLogEntry,
    AuditLog,
    Bot,
    Broadcast,
    BroadcastDelivery,
    ChatUser,
    Conversation,
    Message,
    TokenUsage,
)

ChatKey = tuple[uuid.UUID, str, str]  # (bot_id, channel, external_id): chat_users' unique key

RUNTIME_ERROR_ACTION = "runtime.error"


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


chat_users = _table(ChatUser)
conversations = _table(Conversation)
messages = _table(Message)
token_usage = _table(TokenUsage)
broadcast_deliveries = _table(BroadcastDelivery)
broadcasts = _table(Broadcast)
audit_log = _table(AuditLog)
abuse_log = _table(AbuseLogEntry)


# -- lookups ----------------------------------------------------------------------------------------------------


async def bot_tenants(db: AsyncSession, bot_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """bot id → tenant id for the bots that still exist."""
    if not bot_ids:
        return {}
    rows = await db.execute(select(Bot.id, Bot.tenant_id).where(Bot.id.in_(list(bot_ids))))
    return {row.id: row.tenant_id for row in rows}


async def existing_event_ids(db: AsyncSession, event_ids: Collection[str]) -> set[str]:
    """Which of these event ids are already stored as messages (a redelivered batch)."""
    if not event_ids:
        return set()
    rows = await db.execute(select(messages.c.event_id).where(messages.c.event_id.in_(list(event_ids))))
    return {row[0] for row in rows}


# -- chat users -------------------------------------------------------------------------------------------------


async def upsert_chat_users(
    db: AsyncSession, rows: Sequence[dict[str, Any]], *, seen: bool
) -> dict[ChatKey, uuid.UUID]:
    """Insert chat users or refresh the ones we know; returns their ids by (bot_id, channel, external_id).

    Rows are taken in key order so two consumers upserting overlapping chats lock them in the same order. The
    upsert keeps each row locked until commit, which serializes the conversation choice per chat user. A blank
    name, username or language in the event keeps the stored one (the widget knows only a visitor id). With
    ``seen`` the customer wrote or was answered, so last_seen_at moves (never backwards).
    """
    if not rows:
        return {}
    statement = insert(chat_users)
    excluded = statement.excluded
    set_: dict[str, Any] = {
        "name": func.coalesce(func.nullif(excluded.name, ""), chat_users.c.name),
        "username": func.coalesce(func.nullif(excluded.username, ""), chat_users.c.username),
        "language": func.coalesce(excluded.language, chat_users.c.language),
    }
    if seen:
        set_["last_seen_at"] = func.greatest(chat_users.c.last_seen_at, excluded.last_seen_at)
    statement = statement.on_conflict_do_update(
        index_elements=[chat_users.c.bot_id, chat_users.c.channel, chat_users.c.external_id], set_=set_
    ).returning(chat_users.c.id, chat_users.c.bot_id, chat_users.c.channel, chat_users.c.external_id)
    ordered = sorted(rows, key=lambda row: (str(row["bot_id"]), row["channel"], row["external_id"]))
    result = await db.execute(statement, ordered)
    return {(row.bot_id, row.channel, row.external_id): row.id for row in result}


async def set_reachability(db: AsyncSession, changes: dict[uuid.UUID, bool]) -> int:
    """Set is_reachable per chat user id where it differs; returns how many rows changed."""
    if not changes:
        return 0
    ids = sorted(changes, key=str)
    result = await db.execute(
        text(
            "UPDATE chat_users AS c SET is_reachable = v.reachable "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:reachable AS boolean[])) AS v(id, reachable) "
            "WHERE c.id = v.id AND c.is_reachable IS DISTINCT FROM v.reachable"
        ),
        {"ids": ids, "reachable": [changes[chat_user_id] for chat_user_id in ids]},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- conversations ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class OpenConversation:
    id: uuid.UUID
    last_message_at: datetime


async def latest_conversations(
    db: AsyncSession, chat_user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, OpenConversation]:
    """Each chat user's most recent conversation (the one a new message may continue)."""
    if not chat_user_ids:
        return {}
    statement = (
        select(conversations.c.chat_user_id, conversations.c.id, conversations.c.last_message_at)
        .where(conversations.c.chat_user_id.in_(list(chat_user_ids)))
        .ext(distinct_on(conversations.c.chat_user_id))
        .order_by(
            conversations.c.chat_user_id, conversations.c.last_message_at.desc(), conversations.c.started_at.desc()
        )
    )
    rows = await db.execute(statement)
    return {row.chat_user_id: OpenConversation(row.id, row.last_message_at) for row in rows}


async def insert_conversations(db: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await db.execute(insert(conversations), list(rows))


async def touch_conversations(db: AsyncSession, last_message_at: dict[uuid.UUID, datetime]) -> None:
    """Move last_message_at forward (never backwards: a late, redelivered event must not rewind it)."""
    if not last_message_at:
        return
    ids = sorted(last_message_at, key=str)
    await db.execute(
        text(
            "UPDATE conversations AS c SET last_message_at = GREATEST(c.last_message_at, v.at) "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) AS v(id, at) "
            "WHERE c.id = v.id"
        ),
        {"ids": ids, "ats": [last_message_at[conversation_id] for conversation_id in ids]},
    )


# -- messages and token usage -----------------------------------------------------------------------------------


async def insert_messages(db: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert messages, skipping event ids already stored; returns the event ids actually inserted."""
    if not rows:
        return set()
    statement = (
        insert(messages).on_conflict_do_nothing(index_elements=[messages.c.event_id]).returning(messages.c.event_id)
    )
    result = await db.execute(statement, list(rows))
    return {row[0] for row in result}


async def mark_inbound_fallback(db: AsyncSession, event_ids: Collection[str]) -> None:
    """Flag the customer messages whose answer was the fallback ("unanswered questions" read inbound messages)."""
    if event_ids:
        await db.execute(
            messages.update()
            .where(
                messages.c.event_id.in_(list(event_ids)), messages.c.direction == "in", messages.c.fallback.is_(False)
            )
            .values(fallback=True)
        )


async def add_token_usage(db: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add (requests, tokens_in, tokens_out) to the day's row per (tenant, bot, day, provider, model).

    Rows must be unique on that key within one call (ON CONFLICT cannot touch a row twice in one statement).
    """
    if not rows:
        return
    statement = insert(token_usage)
    statement = statement.on_conflict_do_update(
        constraint="uq_token_usage_tenant_id_bot_id_day_provider_model",
        set_={
            "requests": token_usage.c.requests + statement.excluded.requests,
            "tokens_in": token_usage.c.tokens_in + statement.excluded.tokens_in,
            "tokens_out": token_usage.c.tokens_out + statement.excluded.tokens_out,
        },
    )
    ordered = sorted(rows, key=lambda row: (str(row["bot_id"]), row["day"], row["provider"], row["model"]))
    await db.execute(statement, ordered)


# -- broadcasts -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DeliveryRow:
    id: uuid.UUID
    tenant_id: uuid.UUID
    broadcast_id: uuid.UUID
    chat_user_id: uuid.UUID
    status: str


async def lock_deliveries(db: AsyncSession, delivery_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, DeliveryRow]:
    """Load and lock broadcast deliveries (in id order, so concurrent consumers cannot deadlock on them)."""
    if not delivery_ids:
        return {}
    statement = (
        select(
            broadcast_deliveries.c.id,
            broadcast_deliveries.c.tenant_id,
            broadcast_deliveries.c.broadcast_id,
            broadcast_deliveries.c.chat_user_id,
            broadcast_deliveries.c.status,
        )
        .where(broadcast_deliveries.c.id.in_(list(delivery_ids)))
        .order_by(broadcast_deliveries.c.id)
        .with_for_update()
    )
    rows = await db.execute(statement)
    return {row.id: DeliveryRow(row.id, row.tenant_id, row.broadcast_id, row.chat_user_id, row.status) for row in rows}


async def update_deliveries(db: AsyncSession, changes: Sequence[tuple[uuid.UUID, str, str | None]]) -> None:
    """Set (status, error) per delivery id."""
    if not changes:
        return
    await db.execute(
        text(
            "UPDATE broadcast_deliveries AS d SET status = v.status, error = v.error, updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:errors AS text[])) "
            "AS v(id, status, error) WHERE d.id = v.id"
        ),
        {
            "ids": [change[0] for change in changes],
            "statuses": [change[1] for change in changes],
            "errors": [change[2] for change in changes],
        },
    )


async def bump_broadcast_counters(db: AsyncSession, deltas: dict[uuid.UUID, tuple[int, int]]) -> None:
    """Add (delivered, failed) deltas to each broadcast's counters."""
    if not deltas:
        return
    ids = sorted(deltas, key=str)
    await db.execute(
        text(
            "UPDATE broadcasts AS b SET delivered = b.delivered + v.delivered, failed = b.failed + v.failed, "
            "updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:delivered AS integer[]), CAST(:failed AS integer[])) "
            "AS v(id, delivered, failed) WHERE b.id = v.id"
        ),
        {"ids": ids, "delivered": [deltas[i][0] for i in ids], "failed": [deltas[i][1] for i in ids]},
    )


# -- runtime errors ---------------------------------------------------------------------------------------------


async def recorded_runtime_errors(db: AsyncSession, event_ids: Collection[str], *, since: datetime) -> set[str]:
    """Event ids of runtime errors already in the audit log (rows are stamped with the event's time)."""
    if not event_ids:
        return set()
    event_id = audit_log.c.data["event_id"].astext
    rows = await db.execute(
        select(event_id).where(
            audit_log.c.action == RUNTIME_ERROR_ACTION,
            audit_log.c.created_at >= since,
            event_id.in_(list(event_ids)),
        )
    )
    return {row[0] for row in rows}


async def insert_audit_rows(db: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await db.execute(insert(audit_log), list(rows))


# -- abuse log -------------------------------------------------------------------------------------------------


async def insert_abuse_rows(db: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert abuse log rows, skipping event ids already logged; returns how many were written."""
    if not rows:
        return 0
    statement = (
        insert(abuse_log).on_conflict_do_nothing(index_elements=[abuse_log.c.event_id]).returning(abuse_log.c.id)
    )
    result = await db.execute(statement, list(rows))
    return len(result.all())


# -- token usage for analytics ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BotUsage:
    bot_id: uuid.UUID
    answers: int  # messages sent by the bot (notices included)
    model_answers: int  # answers that called a model (tokens were spent)
    tokens_in: int
    tokens_out: int


async def usage_by_bot(
    db: AsyncSession,
    ctx: TenantContext,
    *,
    start: datetime,
    end: datetime,
    bot_ids: Collection[uuid.UUID] | None = None,
) -> list[BotUsage]:
    """Token usage per bot of the caller's tenant over ``[start, end)``, from the stored outgoing messages.

    ``start``/``end`` are timezone-aware instants (for calendar days, pass midnights in the tenant's timezone).
    Every channel counts, the test console included; bots without answers in the range are absent.
    """
    spent = and_(messages.c.tokens_in + messages.c.tokens_out > 0)
    statement = select(
        Message.bot_id,
        func.count().label("answers"),
        func.count().filter(spent).label("model_answers"),
        func.coalesce(func.sum(Message.tokens_in), 0).label("tokens_in"),
        func.coalesce(func.sum(Message.tokens_out), 0).label("tokens_out"),
    ).where(Message.direction == "out", Message.created_at >= start, Message.created_at < end)
    if bot_ids is not None:
        statement = statement.where(Message.bot_id.in_(list(bot_ids)))
    statement = scoped(statement, Message, ctx).group_by(Message.bot_id).order_by(Message.bot_id)
    rows = await db.execute(statement)
    return [
        BotUsage(row.bot_id, int(row.answers), int(row.model_answers), int(row.tokens_in), int(row.tokens_out))
        for row in rows
    ]
