"""Bots REST API: create, list, read, edit, delete, enable/disable, and the bot's avatar.

Every endpoint authorizes through a dependency (``CurrentTenant`` or the bot loaders in ``bots.auth``) and leaves
the rules to ``bots.service``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response

from control_plane.bots import service
from control_plane.bots.auth import EditableBot, OwnedBot, ReadableBot
from control_plane.bots.repository import StoredAvatar
from control_plane.bots.schemas import BotCreate, BotList, BotOut, BotUpdate
from control_plane.kit.db import SessionDep
from control_plane.kit.errors import NotFound
from control_plane.kit.pages import client_ip
from control_plane.kit.paging import Offset
from control_plane.kit.tenancy import CurrentTenant
from control_plane.settings import get_settings

api = APIRouter(prefix="/api/v1/bots", tags=["bots"])


@api.get("")
async def list_bots(
    ctx: CurrentTenant,
    db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Offset = 0,
) -> BotList:
    """The bots you can see in your workspace, newest first."""
    bots, total = await service.list_bots(db, ctx, limit=limit, offset=offset)
    return BotList(items=[BotOut.from_bot(bot) for bot in bots], total=total, limit=limit, offset=offset)


@api.post("", status_code=201)
async def create_bot(body: BotCreate, ctx: CurrentTenant, db: SessionDep, request: Request) -> BotOut:
    """Create a bot. Needs the editor or owner role; the plan limits how many bots a workspace has (402)."""
    bot = await service.create_bot(db, ctx, body, ip=client_ip(request))
    return BotOut.from_bot(bot)


@api.get("/{bot_id}")
async def get_bot(bot: ReadableBot) -> BotOut:
    """One bot."""
    return BotOut.from_bot(bot)


@api.patch("/{bot_id}")
async def update_bot(body: BotUpdate, bot: EditableBot, ctx: CurrentTenant, db: SessionDep, request: Request) -> BotOut:
    """Change some of a bot's fields; fields left out keep their values, ``widget`` keys are merged."""
    bot = await service.update_bot(db, ctx, bot, body, ip=client_ip(request))
    return BotOut.from_bot(bot)


@api.delete("/{bot_id}", status_code=204)
async def delete_bot(bot: OwnedBot, ctx: CurrentTenant, db: SessionDep, request: Request) -> Response:
    """Delete a bot with its knowledge, channels and conversations. Owners only; this cannot be undone."""
    await service.delete_bot(db, ctx, bot, ip=client_ip(request))
    return Response(status_code=204)


@api.post("/{bot_id}/enable")
async def enable_bot(bot: EditableBot, ctx: CurrentTenant, db: SessionDep, request: Request) -> BotOut:
    """Switch the bot on: it answers on all its channels again."""
    return BotOut.from_bot(await service.set_enabled(db, ctx, bot, True, ip=client_ip(request)))


@api.post("/{bot_id}/disable")
async def disable_bot(bot: EditableBot, ctx: CurrentTenant, db: SessionDep, request: Request) -> BotOut:
    """Switch the bot off: it stops answering everywhere, its settings and knowledge stay."""
    return BotOut.from_bot(await service.set_enabled(db, ctx, bot, False, ip=client_ip(request)))


@api.put("/{bot_id}/avatar")
async def upload_avatar(
    bot: EditableBot,
    ctx: CurrentTenant,
    db: SessionDep,
    request: Request,
    file: Annotated[UploadFile, File(description="PNG, JPEG, WEBP or GIF; cropped to a square.")],
) -> BotOut:
    """Upload the bot's avatar (multipart field ``file``). The type is read from the content, not the name."""
    # One byte more than allowed is enough for the service to refuse it (413) without reading the rest.
    raw = await file.read(get_settings().max_avatar_bytes + 1)
    bot = await service.set_avatar(db, ctx, bot, raw, ip=client_ip(request))
    return BotOut.from_bot(bot)


@api.delete("/{bot_id}/avatar", status_code=204)
async def delete_avatar(bot: EditableBot, ctx: CurrentTenant, db: SessionDep, request: Request) -> Response:
    """Remove the bot's avatar (the widget falls back to its default picture)."""
    await service.remove_avatar(db, ctx, bot, ip=client_ip(request))
    return Response(status_code=204)


def avatar_response(
    request: Request, avatar: StoredAvatar, cache_control: str, extra: dict[str, str] | None = None
) -> Response:
    etag = f'"{avatar.public_id}-{avatar.version}"'
    headers = {"ETag": etag, "Cache-Control": cache_control, **(extra or {})}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(avatar.data, media_type=avatar.mime, headers=headers)


@api.get("/{bot_id}/avatar", response_class=Response, responses={200: {"content": {"image/webp": {}}}})
async def get_avatar(bot: ReadableBot, ctx: CurrentTenant, db: SessionDep, request: Request) -> Response:
    """The bot's avatar image; 404 when it has none."""
    avatar = await service.get_avatar(db, ctx, bot)
    if avatar is None:
        raise NotFound()
    return avatar_response(request, avatar, "private, no-cache")


router = APIRouter()
router.include_router(api)


@router.get(
    "/bots/{public_id}/avatar",
    tags=["bots"],
    response_class=Response,
    responses={200: {"content": {"image/webp": {}}}},
)
async def public_avatar(public_id: str, db: SessionDep, request: Request, v: int | None = None) -> Response:
    """The avatar the website widget shows, by the bot's public id. Cached for a year when ``v`` is current."""
    avatar = await service.get_public_avatar(db, public_id)
    if avatar is None:
        raise NotFound()
    # The version in the URL changes with every upload, so a versioned address can be cached forever.
    cache = "public, max-age=31536000, immutable" if v == avatar.version else "public, max-age=300"
    # Shown on customers' websites, which may isolate themselves (COEP) and then need the explicit permission.
    return avatar_response(request, avatar, cache, {"Cross-Origin-Resource-Policy": "cross-origin"})
