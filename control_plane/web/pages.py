"""Landing page with pricing, the bare-path language redirect, the language switch, and the rendered error pages."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from billing.plans import PLANS
from bot_runtime.i18n import LOCALES, current_locale
from control_plane.kit.db import SessionDep
from control_plane.kit.pages import Lang, set_language_cookie
from control_plane.kit.templating import render

router = APIRouter(include_in_schema=False)
log = logging.getLogger("botfactory.web")

# The plan the pricing table highlights.
FEATURED_PLAN = "business"


@router.get("/")
async def root() -> RedirectResponse:
    """``/`` → the landing page in the resolved language (cookie, then Accept-Language, then English)."""
    return RedirectResponse(f"/{current_locale.get()}/", status_code=307)


async def _signed_in_user(request: Request, db: SessionDep) -> None:
    """Show the signed-in navigation on public pages; the database is touched only when a session cookie exists.

    The landing page must keep working when the database is down, so a failed lookup just renders the anonymous
    navigation.
    """
    from control_plane.accounts.auth import session_user

    try:
        found = await session_user(request, db)
    except (SQLAlchemyError, OSError):
        log.warning("web.landing.session_lookup_failed", exc_info=True)
        found = None
    request.state.user = found[0] if found else None


@router.get("/{lang}/")
async def landing(request: Request, lang: Lang, db: SessionDep) -> HTMLResponse:
    """The public landing page: what BotFactory does, how it works, channels, pricing and questions."""
    await _signed_in_user(request, db)
    return render(request, "landing.html", {"plans": PLANS, "featured_plan": FEATURED_PLAN})


@router.get("/{lang}")
async def landing_no_slash(lang: Lang) -> RedirectResponse:
    return RedirectResponse(f"/{lang}/", status_code=307)


def safe_next(target: str | None, lang: str) -> str:
    """A same-site path to return to; anything that could leave the site falls back to the landing page.

    Browsers treat ``/\\evil.example`` like ``//evil.example``, so backslashes are refused as well as
    scheme-relative and absolute URLs.
    """
    fallback = f"/{lang}/"
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(ch) < 32 for ch in target):
        return fallback
    return target


@router.get("/{lang}/language")
async def choose_language(lang: Lang, next: str = "/") -> RedirectResponse:
    """Saves the choice in a cookie and returns to the same page in that language."""
    response = RedirectResponse(safe_next(next, lang), status_code=303)
    set_language_cookie(response, lang)
    return response


async def render_error_page(request: Request, status: int) -> Response:
    return render(request, f"errors/{status}.html", status_code=status)


# First path segments that are pages: ``/dashboard`` redirects to ``/{lang}/dashboard``. API, webhook, static
# and health paths never appear here, so their URLs stay language-free.
UNPREFIXED_PAGES = (
    "register",
    "login",
    "logout",
    "password-reset",
    "dashboard",
    "bots",
    "profile",
    "verify-email",
    "billing",
    "pricing",
    "team",
    "analytics",
    "conversations",
    "admin",
)


def unprefixed_redirect(path: str) -> str | None:
    """``/dashboard`` → ``/ru/dashboard`` when the first segment is a known page and has no language prefix."""
    first = path.lstrip("/").split("/", 1)[0]
    if first == "bots" and path.endswith("/avatar"):
        return None  # /bots/{public_id}/avatar is the widget's language-free public image, not a page
    if first in UNPREFIXED_PAGES and first not in LOCALES:
        query_free = path if path.startswith("/") else "/" + path
        return f"/{current_locale.get()}{query_free}"
    return None


@router.get("/{lang}/pricing")
async def pricing(lang: Lang) -> RedirectResponse:
    """A shareable address for the pricing table, which lives on the landing page."""
    return RedirectResponse(f"/{lang}/#pricing", status_code=307)
