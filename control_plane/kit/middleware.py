"""ASGI middleware: request ids, security headers, and a body-size cap that answers 413 instead of reading on."""

from __future__ import annotations

import json
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot_runtime.i18n import N_, gettext
from control_plane.kit.logging import request_id_var, tenant_id_var
from control_plane.settings import get_settings


class RequestContextMiddleware:
    """Gives every request an id (echoed as X-Request-ID) and security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming if incoming.replace("-", "").isalnum() else uuid.uuid4().hex
        rid_token = request_id_var.set(request_id)
        tid_token = tenant_id_var.set(None)
        https = get_settings().https

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = {
                    b"x-request-id": request_id.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"strict-origin-when-cross-origin",
                }
                if b"x-frame-options" not in present and not scope.get("path", "").startswith("/widget"):
                    extra[b"x-frame-options"] = b"DENY"
                if https:
                    extra[b"strict-transport-security"] = b"max-age=31536000"
                headers.extend((name, value) for name, value in extra.items() if name not in present)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            request_id_var.reset(rid_token)
            tenant_id_var.reset(tid_token)


class BodySizeLimitMiddleware:
    """Refuses bodies over MAX_REQUEST_BODY_BYTES, by Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            {"error": {"code": "payload_too_large", "message": gettext(N_("The request is too large.")), "fields": []}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_request_body_bytes
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    await self._too_large(send)
                    return
            except ValueError:
                await self._too_large(send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send)


class _BodyTooLarge(Exception):
    pass
