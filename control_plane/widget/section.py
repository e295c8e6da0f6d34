"""The "Website widget" section of the bot page: the embed code with a copy button and a live preview.

Registered over the bots feature's placeholder section at import (``endpoints`` imports this module, and the app
imports ``endpoints``). The look itself (colour, title, position, greeting, language, allowed websites) is edited
in the bot page's own settings form; the preview follows those fields as they are typed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot_runtime.i18n import N_
from control_plane.bots.sections import BotSection, register_section
from control_plane.kit.tenancy import TenantContext
from control_plane.models import Bot
from control_plane.settings import get_settings

TEMPLATE = "widget/_bot_section.html"


def embed_code(public_id: str) -> str:
    """The one line an owner pastes into their website (the contract every embedding relies on)."""
    domain = get_settings().domain_url.rstrip("/")
    return f'<script src="{domain}/widget.js" data-bot="{public_id}" async></script>'


async def section_context(db: AsyncSession, ctx: TenantContext, bot: Bot) -> dict[str, Any]:
    return {
        "embed_code": embed_code(bot.public_id),
        # Relative on purpose: the preview runs on whatever address the owner opened the bot page at, which is
        # then also the origin the widget reports, so it is always our own (see service.is_own_origin).
        "preview_script": "/widget.js",
        "has_origins": bool(bot.allowed_origins),
    }


register_section(BotSection("widget", N_("Website widget"), TEMPLATE, order=40, context=section_context))
