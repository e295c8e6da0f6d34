"""Channels REST API: connect a bot to Telegram, see the connection's state, disconnect it.

Editors and owners change connections, viewers read them; the bot is loaded by ``bots.auth`` dependencies, so another
tenant's bot id is a 404 before anything else happens. The rules live in ``channels.service``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from control_plane.bots.auth import EditableBot, ReadableBot
from control_plane.channels import service
from control_plane.channels.schemas import TelegramConnect, TelegramConnected, TelegramState
from control_plane.kit.db import SessionDep
from control_plane.kit.pages import client_ip
from control_plane.kit.tenancy import CurrentTenant

router = APIRouter(prefix="/api/v1/bots/{bot_id}/channels", tags=["channels"])


@router.post("/telegram")
async def connect_telegram(
    body: TelegramConnect, bot: EditableBot, ctx: CurrentTenant, db: SessionDep, request: Request
) -> TelegramConnected:
    """Connect the bot to Telegram with a token from @BotFather, or replace its token (post again).

    The token is checked with Telegram first (400 when Telegram rejects it, 503 when Telegram can't be reached;
    nothing is saved then) and is refused with 409 when another bot already uses it. ``mode`` says whether Telegram
    calls our webhook or we poll Telegram (TELEGRAM_MODE).
    """
    return await service.connect_telegram(db, ctx, bot, body.token.get_secret_value(), ip=client_ip(request))


@router.get("/telegram")
async def telegram_state(bot: ReadableBot, ctx: CurrentTenant, db: SessionDep) -> TelegramState:
    """Whether the bot is connected to Telegram, in which mode, and what Telegram says about its webhook."""
    return await service.telegram_state(db, ctx, bot)


@router.delete("/telegram", status_code=204)
async def disconnect_telegram(bot: EditableBot, ctx: CurrentTenant, db: SessionDep, request: Request) -> Response:
    """Disconnect the bot from Telegram: its webhook is removed and the stored token is deleted."""
    await service.disconnect_telegram(db, ctx, bot, ip=client_ip(request))
    return Response(status_code=204)
