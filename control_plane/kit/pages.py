"""Helpers for HTML routes: the language-prefixed router, CSRF cookie handling, redirects and listing page numbers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot_runtime.i18n import LOCALES, current_locale
from control_plane.kit import security
from control_plane.settings import get_settings

CSRF_COOKIE_MAX_AGE = 365 * 24 * 3600
# Far past any real listing, and small enough that (page - 1) * page size stays inside PostgreSQL's bigint OFFSET.
MAX_PAGE = 1_000_000


def lang_guard(lang: str) -> str:
    """Path parameter check for /{lang}/ routes; unknown prefixes are a 404 page."""
    from control_plane.kit.errors import NotFound

    if lang not in LOCALES:
        raise NotFound()
    return lang


Lang = Annotated[str, Depends(lang_guard)]


def redirect(path: str, status_code: int = 303) -> RedirectResponse:
    """Redirect to a page of the current language (``redirect("dashboard")``) or an absolute path."""
    target = path if path.startswith(("/", "http")) else f"/{current_locale.get()}/{path}"
    return RedirectResponse(target, status_code=status_code)


class CsrfCookieMiddleware:
    """Gives every browser a random CSRF seed cookie; forms and cookie API calls carry an HMAC of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        name = settings.csrf_cookie_name
        cookie_header = dict(scope.get("headers", [])).get(b"cookie", b"").decode("latin-1")
        seed = ""
        for item in cookie_header.split(";"):
            key, _, value = item.strip().partition("=")
            if key == name and 20 <= len(value) <= 100:
                seed = value
        fresh = not seed
        if fresh:
            seed = security.new_token(24)
        state = scope.setdefault("state", {})
        state["csrf_seed"] = seed
        state["csrf_token"] = security.csrf_token_for(seed)

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                secure = "; Secure" if settings.https else ""
                cookie = f"{name}={seed}; Path=/; HttpOnly; SameSite=Lax; Max-Age={CSRF_COOKIE_MAX_AGE}{secure}"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def set_csrf_cookie(response: Response, seed: str) -> None:
    """Replace the browser's CSRF seed, with the same attributes the middleware gives a fresh one."""
    settings = get_settings()
    response.set_cookie(
        settings.csrf_cookie_name,
        seed,
        max_age=CSRF_COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.https,
    )


def set_language_cookie(response: RedirectResponse, lang: str) -> None:
    settings = get_settings()
    response.set_cookie(
        settings.language_cookie_name, lang, max_age=365 * 24 * 3600, samesite="lax", secure=settings.https
    )


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def page_number(request: Request) -> int:
    """The ``?page=`` of a listing, from 1; anything else typed into the URL is page 1, and a huge number is capped
    (it lists nothing instead of overflowing the SQL OFFSET into a 500)."""
    try:
        return min(max(int(request.query_params.get("page", "1")), 1), MAX_PAGE)
    except ValueError:
        return 1
