"""Mounts the admin console into the control plane app: the /api/v1/admin API and the /{lang}/admin pages.

The console is added as routers of the main app rather than a separate ASGI app, so it shares the middleware
(request ids, language, CSRF seed), the one error shape and the OpenAPI document.
"""

from __future__ import annotations

from fastapi import FastAPI

from admin_console import endpoints, pages
from admin_console.runtimes import endpoints as runtime_endpoints
from admin_console.runtimes import pages as runtime_pages


def mount(app: FastAPI) -> None:
    """Add the admin API and pages to ``app`` (called by ``control_plane.app.create_app``)."""
    app.include_router(endpoints.router)
    app.include_router(pages.router)
    app.include_router(runtime_endpoints.router)
    app.include_router(runtime_pages.router)
