"""Unauthenticated endpoints the messengers call. Not part of the public API (hidden from OpenAPI).

``POST /webhooks/telegram/{bot_id}``: the per-bot secret header is checked in constant time (403 when wrong or
missing, 404 for an unknown bot), the body is capped and must be an Update (400 otherwise), and the update goes onto
the tenant's inbound stream, waking its runtime. The answer is 200 at once, also while the tenant is suspended or
its plan lapsed: the entry then waits in the stream and is answered when the runtime runs again (Telegram would
otherwise retry and finally drop it, and mark the webhook as failing).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from control_plane.channels import service
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import NotFound, PayloadTooLarge

router = APIRouter(prefix="/webhooks", include_in_schema=False)

# Telegram updates are small (a 4096-character message with entities is a few kilobytes); anything near this is junk.
MAX_UPDATE_BYTES = 256 * 1024


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge()
    return bytes(body)


@router.post("/telegram/{bot_id}")
async def telegram_webhook(bot_id: str, request: Request, db: SessionDep) -> Response:
    try:
        parsed_id = uuid.UUID(bot_id)
    except ValueError:
        raise NotFound() from None
    target = await service.verify_telegram_webhook(
        db, parsed_id, request.headers.get("x-telegram-bot-api-secret-token")
    )
    update = service.parse_update(await read_capped(request, MAX_UPDATE_BYTES))
    await service.enqueue_telegram_update(target, parsed_id, update)
    return Response(status_code=200)
