"""The website widget over HTTP: ``GET /widget.js`` and the public API it calls, with per-bot CORS.

Embed code (a contract; the bot page shows it)::

    <script src="https://DOMAIN/widget.js" data-bot="PUBLIC_ID" async></script>

Routes (all public; the bot is named by its public id, which the embed code publishes):

- ``GET /widget.js``: the script, cached for an hour then revalidated (ETag), readable from any origin.
- ``GET /api/v1/widget/{public_id}/config``: look, language and translated interface text.
- ``POST /api/v1/widget/{public_id}/messages``: 202 {message_id}; idempotent on client_message_id.
- ``GET /api/v1/widget/{public_id}/history?visitor_id=``: the visitor's conversation.
- ``GET /api/v1/widget/{public_id}/stream?visitor_id=&after=``: Server-Sent Events of the conversation (visitor
  messages and the bot's replies), heartbeat comments every 15 s, resumable with Last-Event-ID.
- ``OPTIONS /api/v1/widget/{public_id}/{action}``: CORS preflight.

CORS: responses carry ``Access-Control-Allow-Origin`` only for an allowed origin (see ``service`` for the rule),
echoing it; a refused origin gets 403 with a translated error and no CORS header, so its page cannot read
anything. The one exception is the config's refusal, readable from anywhere, so widget.js can tell the site's
developer in the console why no chat appears. Error responses of allowed origins carry the CORS headers too (the
widget shows their translated message).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute

from control_plane.kit import ratelimit
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import AppError, NotFound, validation_error
from control_plane.kit.pages import client_ip
from control_plane.kit.redis import get_redis
from control_plane.widget import assets, service
from control_plane.widget import section as _section  # noqa: F401  (registers the bot page section)
from control_plane.widget.errors import OriginRefused, WidgetUnavailable
from control_plane.widget.replies import reply_hub, stream_id
from control_plane.widget.schemas import (
    VisitorId,
    WidgetConfig,
    WidgetHistory,
    WidgetMessageAccepted,
    WidgetMessageIn,
)
from control_plane.widget.service import WidgetBot

SCRIPT_CACHE = "public, max-age=3600, stale-while-revalidate=604800"
HEARTBEAT_SECONDS = 15.0
# An SSE connection ends after this long and the browser reconnects (Last-Event-ID): spreads long-lived
# connections over workers after a deploy or scale-out, and bounds what a forgotten tab holds.
STREAM_MAX_SECONDS = 600.0
RETRY_MS = 3000
STREAM_CONNECTS_PER_IP_PER_MINUTE = 120
STREAM_ID = re.compile(r"\d{1,19}-\d{1,19}")
ACTIONS = frozenset({"config", "messages", "history", "stream"})
CORS_STATE = "widget_cors"


def _cors_headers(origin: str | None) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


class WidgetRoute(APIRoute):
    """Adds the CORS headers decided by the bot dependency to every answer, errors included."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            try:
                response = await handler(request)
            except RequestValidationError as exc:
                error = validation_error(exc)
                error.headers = {**getattr(request.state, CORS_STATE, {})}
                raise error from None
            except AppError as exc:
                exc.headers = {**getattr(request.state, CORS_STATE, {}), **(exc.headers or {})}
                raise
            response.headers.update(getattr(request.state, CORS_STATE, {}))
            return response

        return with_cors


def _allowed_bot(*, origin_required: bool = False, refusal_readable: bool = False) -> Any:
    async def dependency(public_id: str, request: Request, db: SessionDep) -> WidgetBot:
        bot = await service.get_widget_bot(db, public_id)
        origin = request.headers.get("origin")
        try:
            service.check_origin(bot, origin, request.headers.get("host"), required=origin_required)
        except OriginRefused as exc:
            if refusal_readable:
                exc.headers = {"Access-Control-Allow-Origin": "*"}
            raise
        setattr(request.state, CORS_STATE, _cors_headers(origin))
        return bot

    return Depends(dependency)


ReadBot = Annotated[WidgetBot, _allowed_bot()]
ConfigBot = Annotated[WidgetBot, _allowed_bot(refusal_readable=True)]
SendBot = Annotated[WidgetBot, _allowed_bot(origin_required=True)]

router = APIRouter(route_class=WidgetRoute)
api = APIRouter(prefix="/api/v1/widget", tags=["widget"], route_class=WidgetRoute)


@router.api_route("/widget.js", methods=["GET", "HEAD"], include_in_schema=False)
async def widget_script(request: Request) -> Response:
    """The widget script for ``<script src=".../widget.js" data-bot="PUBLIC_ID" async>``."""
    script = assets.widget_script()
    headers = {
        "ETag": script.etag,
        "Cache-Control": SCRIPT_CACHE,
        "Access-Control-Allow-Origin": "*",
        # Sites that isolate themselves (COEP) may still load it.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if script.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(script.body, media_type="text/javascript; charset=utf-8", headers=headers)


@api.options("/{public_id}/{action}", include_in_schema=False)
async def preflight(action: str, request: Request, bot: SendBot) -> Response:
    """CORS preflight: allowed origins get the permission, others a translated 403 (see the module docstring)."""
    if action not in ACTIONS:
        raise NotFound()
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Last-Event-ID",
            "Access-Control-Max-Age": "600",
        },
    )


@api.get("/{public_id}/config", response_model=WidgetConfig)
async def widget_config(
    bot: ConfigBot,
    request: Request,
    lang: Annotated[str | None, Query(max_length=16, description="The visitor's browser language.")] = None,
) -> WidgetConfig:
    """How the widget looks and speaks; 503 with a translated notice when the bot can't chat now."""
    if not bot.available:
        raise WidgetUnavailable()
    language = service.widget_language(bot, lang, request.headers.get("accept-language"))
    return service.widget_config(bot, language)


@api.post("/{public_id}/messages", status_code=202, response_model=WidgetMessageAccepted)
async def send_message(bot: SendBot, body: WidgetMessageIn, request: Request) -> WidgetMessageAccepted:
    """Queue the visitor's message for the bot; the answer arrives on the stream. A retry (same
    client_message_id) returns the first attempt's message id and queues nothing."""
    language = service.widget_language(bot, body.language, request.headers.get("accept-language"))
    message_id = await service.accept_message(bot, body, ip=client_ip(request), language=language)
    return WidgetMessageAccepted(message_id=message_id)


@api.get("/{public_id}/history", response_model=WidgetHistory)
async def widget_history(bot: ReadBot, visitor_id: Annotated[VisitorId, Query()]) -> WidgetHistory:
    """The visitor's conversation with the bot, oldest first (so it survives a page reload)."""
    return await service.history(bot, visitor_id)


@api.get(
    "/{public_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def widget_stream(
    bot: ReadBot,
    request: Request,
    visitor_id: Annotated[VisitorId, Query()],
    after: Annotated[str | None, Query(pattern=r"^\d{1,19}-\d{1,19}$", description="Resume after this id.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> StreamingResponse:
    """Server-Sent Events: every message of the conversation after ``after`` (or the Last-Event-ID a
    reconnecting browser sends), as ``event: message`` with the message JSON; ``: heartbeat`` every 15 s."""
    await ratelimit.enforce(
        "widget-stream-ip", client_ip(request), limit=STREAM_CONNECTS_PER_IP_PER_MINUTE, window_seconds=60
    )
    resume = last_event_id if last_event_id and _is_stream_id(last_event_id) else after
    key = service.conversation_key(bot, visitor_id)
    return StreamingResponse(
        _events(key, resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _is_stream_id(value: str) -> bool:
    return STREAM_ID.fullmatch(value) is not None


def _sse(entry_id: str, fields: dict[Any, Any]) -> str | None:
    message = service.to_message(entry_id, fields)
    if message is None:
        return None
    return f"id: {entry_id}\nevent: message\ndata: {service.event_json(message)}\n\n"


async def _events(key: str, resume: str | None) -> AsyncIterator[str]:
    hub = reply_hub()
    # Subscribe first, then replay: whatever arrives during the replay is queued and skipped if already sent.
    sub = await hub.subscribe(key)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        last = stream_id(resume) if resume else (0, 0)
        for raw_id, fields in await get_redis().xrange(key, min=resume or "-"):
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if stream_id(entry_id) <= last:
                continue
            last = stream_id(entry_id)
            if (chunk := _sse(entry_id, fields)) is not None:
                yield chunk
        deadline = time.monotonic() + STREAM_MAX_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                entry_id, fields = await asyncio.wait_for(sub.queue.get(), timeout=min(HEARTBEAT_SECONDS, left))
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if sub.overflowed:
                return  # fell behind: the browser reconnects and resumes from its Last-Event-ID
            if stream_id(entry_id) <= last:
                continue
            last = stream_id(entry_id)
            if (chunk := _sse(entry_id, fields)) is not None:
                yield chunk
    finally:
        hub.unsubscribe(sub)


router.include_router(api)
