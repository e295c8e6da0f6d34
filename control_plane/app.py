"""Builds the FastAPI app: middleware, routers of every feature, the admin console sub-app, static files, errors."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

import admin_console.app
from control_plane.kit.db import dispose_engine
from control_plane.kit.errors import install_error_handlers
from control_plane.kit.i18n import LocaleMiddleware
from control_plane.kit.logging import configure_logging
from control_plane.kit.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from control_plane.kit.pages import CsrfCookieMiddleware
from control_plane.kit.redis import close_redis
from control_plane.settings import get_settings
from control_plane.web.pages import render_error_page, unprefixed_redirect

ROOT = Path(__file__).resolve().parents[1]

# Each feature exposes ``router``; API routers carry their own /api/v1 prefix. Order matters only for pages:
# fixed paths before /{lang}/... catch-alls, so control_plane.web.pages (/{lang}, /{lang}/...) comes last.
ROUTERS = (
    "control_plane.web.health",
    "control_plane.accounts.endpoints",
    "control_plane.accounts.pages",
    "control_plane.bots.endpoints",
    "control_plane.bots.pages",
    "control_plane.knowledge.endpoints",
    "control_plane.knowledge.pages",
    "control_plane.channels.endpoints",
    "control_plane.channels.pages",
    "control_plane.channels.webhooks",
    "control_plane.widget.endpoints",
    "control_plane.web.pages",
)


class UnprefixedPageRedirect:
    """``/dashboard`` → ``/{resolved lang}/dashboard``; runs inside LocaleMiddleware so the language is known."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            target = unprefixed_redirect(scope["path"])
            if target:
                query = scope.get("query_string", b"").decode("latin-1")
                response = RedirectResponse(target + (f"?{query}" if query else ""), status_code=307)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await dispose_engine()
    await close_redis()


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="BotFactory API",
        version="1.0",
        description="Create AI chatbots that answer your customers from your own knowledge base.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    for module_name in ROUTERS:
        app.include_router(importlib.import_module(module_name).router)
    admin_console.app.mount(app)
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    install_error_handlers(app, render_error_page)
    # Outermost last: request id → body cap → language → unprefixed redirect → CSRF seed → routes.
    app.add_middleware(CsrfCookieMiddleware)
    app.add_middleware(UnprefixedPageRedirect)
    app.add_middleware(LocaleMiddleware)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app


app = create_app()
