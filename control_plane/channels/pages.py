"""The bot page's "Channels" section and its forms: connect Telegram (or change its token), disconnect it.

Registered at import (the app imports this module as a router). The forms post to the routes below, which load
the bot with ``bots.pages.page_bot`` (the same role check as the API) and call ``channels.service`` exactly like
the API does; cookie-authenticated posts are CSRF-checked by the auth dependency before a handler runs. A refused
token saves nothing: the service runs inside a savepoint that is rolled back on error, and the bot page is drawn
again with the translated message. WhatsApp and Instagram are shown only as a plan notice: they are not built yet.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.limits import TenantSuspended
from billing.plans import plan_for
from bot_runtime.i18n import N_, gettext
from control_plane.accounts.auth import OptionalPrincipal
from control_plane.bots.pages import app_error_alert, page_bot, render_bot
from control_plane.bots.sections import BotSection, register_section
from control_plane.channels import service
from control_plane.channels.errors import (
    ChannelNotInPlan,
    TelegramRequestFailed,
    TelegramTokenInUse,
    TelegramTokenRejected,
    TelegramUnavailable,
)
from control_plane.channels.repository import TELEGRAM
from control_plane.channels.schemas import TelegramConnect
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import validation_error
from control_plane.kit.pages import Lang, client_ip, redirect
from control_plane.kit.tenancy import TenantContext
from control_plane.models import Bot, Role

router = APIRouter(include_in_schema=False)

SECTION_KEY = "channels"
ANCHOR = f"#section-{SECTION_KEY}"
# What the connect form shows beside itself; anything else (403, 404 ...) is an error page.
CONNECT_ERRORS = (
    TelegramTokenRejected,
    TelegramTokenInUse,
    TelegramUnavailable,
    TelegramRequestFailed,
    ChannelNotInPlan,
    TenantSuspended,
)
# ?channels=<key> after a successful post (only these keys are shown: the query string is not trusted text).
NOTICES = {
    "connected": N_("Telegram is connected. Customers can write to the bot now."),
    "disconnected": N_("Telegram is disconnected. The bot no longer answers there."),
}
MODE_LABELS = {
    "webhook": N_("Webhook (Telegram sends messages to us)"),
    "polling": N_("Polling (we fetch messages from Telegram)"),
}
STATUS_LABELS = {
    service.STATUS_CONNECTED: N_("Working"),
    service.STATUS_WEBHOOK_FAILING: N_("Messages are not arriving"),
    service.STATUS_TOKEN_REJECTED: N_("Telegram no longer accepts the token"),
}
# Channels that are shown but cannot be connected yet.
UPCOMING_CHANNELS = (("whatsapp", N_("WhatsApp")), ("instagram", N_("Instagram")))


# --------------------------------------------------------------------------------------------------------------
# The section


async def channels_section(db: AsyncSession, ctx: TenantContext, bot: Bot) -> dict[str, Any]:
    plan = plan_for(ctx.tenant.plan)
    return {
        "telegram": await service.telegram_state(db, ctx, bot),
        "telegram_in_plan": TELEGRAM in plan.channels,
        "plan_notice": ChannelNotInPlan.message,
        "upcoming": [(kind, name, kind in plan.channels) for kind, name in UPCOMING_CHANNELS],
        "notices": NOTICES,
        "mode_labels": MODE_LABELS,
        "status_labels": STATUS_LABELS,
    }


register_section(
    BotSection(SECTION_KEY, N_("Channels"), "channels/section_channels.html", order=20, context=channels_section)
)


# --------------------------------------------------------------------------------------------------------------
# Forms


def _done(bot: Bot, key: str) -> Response:
    return redirect(f"bots/{bot.id}?{SECTION_KEY}={key}{ANCHOR}")


def _error(message: str) -> dict[str, str]:
    # "section" lets the Channels section repeat the message beside its form.
    return {"kind": "error", "message": message, "section": SECTION_KEY}


@router.post("/{lang}/bots/{bot_id}/channels/telegram")
async def connect_telegram(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    """Connect the bot to Telegram, or replace its token: the same call as POST /api/v1/bots/{id}/channels/telegram."""
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    raw = (await request.form()).get("token")
    try:
        data = TelegramConnect.model_validate({"token": raw if isinstance(raw, str) else ""})
    except ValidationError as exc:
        messages = [gettext(msgid) for _field, msgid in validation_error(RequestValidationError(exc.errors())).fields]
        return await render_bot(request, db, ctx, bot, alert=_error(" ".join(messages)), status=422)
    try:
        # A savepoint: whatever the service flushed before Telegram said no is undone, the request's session lives on.
        async with db.begin_nested():
            await service.connect_telegram(db, ctx, bot, data.token.get_secret_value(), ip=client_ip(request))
    except CONNECT_ERRORS as exc:
        return await render_bot(
            request, db, ctx, bot, alert=_error(app_error_alert(exc)["message"]), status=exc.status_code
        )
    return _done(bot, "connected")


@router.post("/{lang}/bots/{bot_id}/channels/telegram/delete")
async def disconnect_telegram(
    request: Request, lang: Lang, bot_id: str, principal: OptionalPrincipal, db: SessionDep
) -> Response:
    """Disconnect the bot from Telegram (its webhook is removed, the stored token deleted)."""
    found = await page_bot(request, principal, db, bot_id, Role.editor)
    if isinstance(found, Response):
        return found
    ctx, bot = found
    await service.disconnect_telegram(db, ctx, bot, ip=client_ip(request))
    return _done(bot, "disconnected")
