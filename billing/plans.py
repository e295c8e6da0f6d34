"""The plans as data: prices in minor units, limits and features. Every limit check reads from here."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot_runtime.i18n import N_


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    name: str  # msgid
    price_minor: int  # per month, in cents
    currency: str
    max_bots: int | None  # None = unlimited
    messages_per_day: int | None
    channels: frozenset[str]
    model_tier: str  # flash | pro
    features: tuple[str, ...] = field(default_factory=tuple)  # msgids shown on the pricing table
    analytics: bool = False
    team: bool = False
    api_access: bool = False
    priority_support: bool = False


ALL_CHANNELS = frozenset({"telegram", "whatsapp", "instagram", "widget"})

PLANS: dict[str, Plan] = {
    "free": Plan(
        code="free",
        name=N_("Free trial"),
        price_minor=0,
        currency="USD",
        max_bots=1,
        messages_per_day=100,
        channels=frozenset({"telegram", "widget"}),
        model_tier="flash",
        features=(
            N_("14-day free trial"),
            N_("1 bot"),
            N_("100 messages a day"),
            N_("Telegram and website widget"),
            N_("Core AI features"),
        ),
    ),
    "business": Plan(
        code="business",
        name=N_("Business"),
        price_minor=4900,
        currency="USD",
        max_bots=20,
        messages_per_day=None,
        channels=ALL_CHANNELS,
        model_tier="flash",
        features=(
            N_("20 bots"),
            N_("Unlimited messages"),
            N_("Analytics dashboard"),
            N_("Team members"),
            N_("Telegram, WhatsApp, Instagram and website widget"),
        ),
        analytics=True,
        team=True,
    ),
    "enterprise": Plan(
        code="enterprise",
        name=N_("Enterprise"),
        price_minor=9900,
        currency="USD",
        max_bots=None,
        messages_per_day=None,
        channels=ALL_CHANNELS,
        model_tier="pro",
        features=(
            N_("Unlimited everything"),
            N_("Gemini 2.5 Pro model"),
            N_("API access"),
            N_("Priority support"),
            N_("Custom integrations"),
        ),
        analytics=True,
        team=True,
        api_access=True,
        priority_support=True,
    ),
}


def plan_for(code: str) -> Plan:
    return PLANS.get(code, PLANS["free"])
