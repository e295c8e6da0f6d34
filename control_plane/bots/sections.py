"""The sections of a bot's page (Knowledge, Channels, Test console, Widget ...), registered by the features.

The bot page draws its own settings form and then every registered section in order, each from its own template.
A feature adds or replaces a section by key, at import time::

    register_section(BotSection("knowledge", N_("Knowledge"), "knowledge/bot_section.html", order=10,
                                context=knowledge_context))

``context`` (optional) loads what the template needs; it receives the request's session, the caller's tenant
context and the bot, and returns extra template variables, available in the section's template as ``section_data``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.kit.tenancy import TenantContext
from control_plane.models import Bot

SectionContext = Callable[[AsyncSession, TenantContext, Bot], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class BotSection:
    key: str  # also the HTML anchor: #section-{key}
    title: str  # msgid, translated when rendered
    template: str
    order: int = 100
    context: SectionContext | None = None


_sections: dict[str, BotSection] = {}


def register_section(section: BotSection) -> None:
    """Add a section, or replace the one with the same key."""
    _sections[section.key] = section


def bot_sections() -> list[BotSection]:
    return sorted(_sections.values(), key=lambda section: (section.order, section.key))
