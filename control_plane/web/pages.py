"""Landing page with pricing, the bare-path language redirect, and the rendered error pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot_runtime.i18n import LOCALES, current_locale
from control_plane.kit.pages import Lang, set_language_cookie
from control_plane.kit.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(f"/{current_locale.get()}/", status_code=307)


@router.get("/{lang}/")
async def landing(request: Request, lang: Lang) -> HTMLResponse:
    from billing.plans import PLANS

    return render(request, "landing.html", {"plans": PLANS})


@router.get("/{lang}")
async def landing_no_slash(lang: Lang) -> RedirectResponse:
    return RedirectResponse(f"/{lang}/", status_code=307)


@router.get("/{lang}/language")
async def choose_language(lang: Lang, next: str = "/") -> RedirectResponse:
    """Saves the choice in a cookie and returns to the same page in that language."""
    target = next if next.startswith("/") and not next.startswith("//") else f"/{lang}/"
    response = RedirectResponse(target, status_code=303)
    set_language_cookie(response, lang)
    return response


async def render_error_page(request: Request, status: int) -> Response:
    return render(request, f"errors/{status}.html", status_code=status)


UNPREFIXED_PAGES = ("register", "login", "logout", "password-reset", "dashboard", "bots", "profile", "verify-email")


def unprefixed_redirect(path: str) -> str | None:
    """``/dashboard`` → ``/ru/dashboard`` when the first segment is a known page and has no language prefix."""
    first = path.lstrip("/").split("/", 1)[0]
    if first in UNPREFIXED_PAGES and first not in LOCALES:
        query_free = path if path.startswith("/") else "/" + path
        return f"/{current_locale.get()}{query_free}"
    return None
