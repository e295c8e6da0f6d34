"""Who may call the bot endpoints: dependencies that load the path's bot with the role the endpoint needs.

Loading the bot in a dependency means another tenant's id is a 404 before the body is even validated, and the
endpoints never see a bot the caller may not use. Viewers read, editors change, owners delete.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from control_plane.kit.db import SessionDep
from control_plane.kit.tenancy import CurrentTenant, get_bot
from control_plane.models import Bot, Role


def bot_with_role(minimum: Role) -> Callable[..., Awaitable[Bot]]:
    async def dependency(bot_id: uuid.UUID, ctx: CurrentTenant, db: SessionDep) -> Bot:
        return await get_bot(db, ctx, bot_id, minimum=minimum)

    return dependency


ReadableBot = Annotated[Bot, Depends(bot_with_role(Role.viewer))]
EditableBot = Annotated[Bot, Depends(bot_with_role(Role.editor))]
OwnedBot = Annotated[Bot, Depends(bot_with_role(Role.owner))]
