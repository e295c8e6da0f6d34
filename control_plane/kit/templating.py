"""The Jinja2 environment: autoescaped, translated per request (never one locale bound globally), and ``render``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot_runtime.i18n import LOCALES, current_locale, translations_for
from control_plane.kit import i18n
from control_plane.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = [ROOT / "templates", ROOT / "admin_console" / "templates"]

env = Environment(
    loader=FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
    autoescape=select_autoescape(["html", "xml"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)


def _template_gettext(message: str) -> str:
    # Jinja's newstyle gettext applies the %(name)s values (and autoescaping) itself, so translate only.
    return translations_for(current_locale.get()).gettext(message)


def _template_ngettext(singular: str, plural: str, n: int) -> str:
    return translations_for(current_locale.get()).ngettext(singular, plural, n)


# Callables that read the request's context variable: two requests in different languages can render at once.
env.install_gettext_callables(_template_gettext, _template_ngettext, newstyle=True)  # type: ignore[attr-defined]
env.globals.update(
    LOCALES=LOCALES,
    LANGUAGE_NAMES=i18n.LANGUAGE_NAMES,
    format_money=i18n.format_money,
    format_number=i18n.format_number,
    format_date=i18n.format_date,
    format_datetime=i18n.format_datetime,
)


def localized_path(path: str, lang: str) -> str:
    """The same page in another language: swap (or add) the /{lang}/ prefix."""
    first, _, rest = path.lstrip("/").partition("/")
    return f"/{lang}/{rest}" if first in LOCALES else f"/{lang}/{path.lstrip('/')}"


def url(path: str) -> str:
    """A page path in the current language: ``url('dashboard')`` → ``/ru/dashboard``."""
    return f"/{current_locale.get()}/{path.lstrip('/')}"


env.globals["url"] = url


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page with the request-wide context (user, CSRF token, language switcher links)."""
    lang = current_locale.get()
    query = ("?" + request.url.query) if request.url.query else ""
    state = request.state
    ctx: dict[str, Any] = {
        "request": request,
        "lang": lang,
        "settings": get_settings(),
        "current_user": getattr(state, "user", None),
        "csrf_token": getattr(state, "csrf_token", ""),
        "switch_links": {code: localized_path(request.url.path, code) + query for code in LOCALES},
        "flash": getattr(state, "flash", None),
    }
    ctx.update(context or {})
    html = env.get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status_code)
