"""Helpers for the events tests: a tenant with bots, RuntimeEvents as the runtimes emit them, and DB reads."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from bot_runtime.contract import RuntimeEvent
from control_plane.events import service
from control_plane.events.service import Entry, IngestReport
from control_plane.kit.db import get_sessionmaker
from control_plane.models import Bot, Tenant

IDLE_GAP = timedelta(hours=12)
_entry_ids = itertools.count(1)


@dataclass
class World:
    tenant_id: uuid.UUID
    bot_id: uuid.UUID
    other_bot_id: uuid.UUID

    def event(
        self,
        type: str,
        *,
        event_id: str | None = None,
        chat: str | dict[str, Any] = "1001",
        channel: str = "telegram",
        data: dict[str, Any] | None = None,
        at: float | None = None,
        bot_id: uuid.UUID | None = None,
        tenant_id: uuid.UUID | None = None,
    ) -> RuntimeEvent:
        """A RuntimeEvent shaped like the Telegram channel's (chat given by external id or as the whole dict)."""
        chat_info = (
            {"external_id": chat, "name": "Ann Lee", "username": "ann", "language": "en"}
            if isinstance(chat, str)
            else chat
        )
        return RuntimeEvent(
            event_id=event_id or f"tg:{uuid.uuid4().hex}:{type}:0",
            type=type,
            tenant_id=str(tenant_id or self.tenant_id),
            bot_id=str(bot_id or self.bot_id),
            channel=channel,
            chat=chat_info,
            data=data or {},
            at=at if at is not None else time.time(),
        )

    def exchange(
        self, inbound_id: str, *, chat: str = "1001", at: float | None = None, **out: Any
    ) -> list[RuntimeEvent]:
        """message.in + message.out of one inbound entry, with the ids ``ctx.emit`` gives them."""
        at = at if at is not None else time.time()
        answer = {
            "text": "We open at nine.",
            "latency_ms": 420,
            "delivery": "sent",
            "language": "en",
            "provider": "gemini",
            "model": "gemini-3.5-flash",
            "tokens_in": 120,
            "tokens_out": 30,
            "fallback": False,
            "sources": ["chunk-1", "chunk-2"],
            **out,
        }
        return [
            self.event(
                "message.in",
                event_id=f"{inbound_id}:message.in:0",
                chat=chat,
                data={"text": "When do you open?", "language": "en", "message_id": 7},
                at=at,
            ),
            self.event("message.out", event_id=f"{inbound_id}:message.out:1", chat=chat, data=answer, at=at + 0.4),
        ]


async def make_world() -> World:
    async with get_sessionmaker()() as db:
        tenant = Tenant(name="Shop")
        db.add(tenant)
        await db.flush()
        bot = Bot(tenant_id=tenant.id, name="Helper")
        other = Bot(tenant_id=tenant.id, name="Second")
        db.add_all([bot, other])
        await db.commit()
        return World(tenant.id, bot.id, other.id)


def entries(events: Sequence[RuntimeEvent]) -> list[Entry]:
    """Stream entries as XREADGROUP returns them (decoded)."""
    return [(f"{next(_entry_ids)}-0", event.to_fields()) for event in events]


async def ingest(batch: Sequence[Entry] | Sequence[RuntimeEvent], *, idle_gap: timedelta = IDLE_GAP) -> IngestReport:
    """Ingest in one committed transaction, as the consumer does (without Redis)."""
    items = entries(batch) if batch and isinstance(batch[0], RuntimeEvent) else batch  # type: ignore[arg-type]
    async with get_sessionmaker()() as db, db.begin():
        return await service.ingest(db, items, idle_gap=idle_gap)  # type: ignore[arg-type]


async def count(model: Any, *where: Any) -> int:
    async with get_sessionmaker()() as db:
        return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def rows(statement: Any) -> list[Any]:
    async with get_sessionmaker()() as db:
        return list((await db.execute(statement)).scalars())
