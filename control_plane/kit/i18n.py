"""Per-request language resolution and Babel formatting for the web app.

Order: URL prefix (/uz/, /ru/, /en/) → saved choice (cookie, which login and the profile keep in step with the
user's saved language) → Accept-Language → English. The choice lives in ``bot_runtime.i18n.current_locale``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from babel import Locale
from babel.dates import format_date as _format_date
from babel.dates import format_datetime as _format_datetime
from babel.numbers import format_currency, format_decimal
from starlette.types import ASGIApp, Receive, Scope, Send

from bot_runtime.i18n import DEFAULT_LOCALE, LOCALES, current_locale, normalize_locale
from control_plane.settings import get_settings

LANGUAGE_NAMES = {"uz": "Oʻzbekcha", "ru": "Русский", "en": "English"}
BABEL_LOCALES = {"uz": "uz_Latn", "ru": "ru", "en": "en"}


def parse_accept_language(header: str | None) -> str | None:
    """Best supported language from an Accept-Language header, honouring q-values."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        pieces = part.strip().split(";")
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        lang = normalize_locale(pieces[0])
        if lang and quality > 0:
            ranked.append((-quality, index, lang))
    return sorted(ranked)[0][2] if ranked else None


def cookie_locale(cookie_header: str) -> str | None:
    name = get_settings().language_cookie_name
    for item in cookie_header.split(";"):
        key, _, value = item.strip().partition("=")
        if key == name:
            return normalize_locale(value)
    return None


def path_locale(path: str) -> str | None:
    segment = path.lstrip("/").split("/", 1)[0]
    return segment if segment in LOCALES else None


def resolve_locale(path: str, cookie_header: str, accept_language: str | None) -> str:
    return path_locale(path) or cookie_locale(cookie_header) or parse_accept_language(accept_language) or DEFAULT_LOCALE


class LocaleMiddleware:
    """Pure ASGI middleware so the context variable is set in the same context the endpoint runs in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        locale = resolve_locale(scope.get("path", "/"), headers.get("cookie", ""), headers.get("accept-language"))
        token = current_locale.set(locale)
        try:
            await self.app(scope, receive, send)
        finally:
            current_locale.reset(token)


def babel_locale() -> str:
    return BABEL_LOCALES.get(current_locale.get(), "en")


def format_money(amount_minor: int, currency: str) -> str:
    """Money is stored as integer minor units plus a currency code. Whole amounts read "$49", not "$49.00"."""
    amount = Decimal(amount_minor) / 100
    locale = babel_locale()
    if amount == amount.to_integral_value():
        # The locale's own pattern (symbol side, spacing, grouping) without its fraction digits.
        pattern = Locale.parse(locale).currency_formats["standard"].pattern.replace(".00", "")
        return format_currency(amount, currency, locale=locale, format=pattern, currency_digits=False)
    return format_currency(amount, currency, locale=locale)


def format_number(value: float | int) -> str:
    return format_decimal(value, locale=babel_locale())


def format_date(value: datetime | None, fmt: str = "medium") -> str:
    return "" if value is None else _format_date(value, format=fmt, locale=babel_locale())


def format_datetime(value: datetime | None, fmt: str = "medium", tz: str | None = None) -> str:
    if value is None:
        return ""
    return _format_datetime(value, format=fmt, tzinfo=tz, locale=babel_locale())
