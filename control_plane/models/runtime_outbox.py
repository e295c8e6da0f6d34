"""Runtime config publication requests, written in the transaction that changed the config (a transactional outbox).

Publishing to Redis happens after commit, outside the transaction; a web process that dies in between, or a Redis
that is briefly unreachable, would otherwise leave the runtime on an old config until someone ran ``botfactory
runtimes sync``. The row says "this tenant's config changed at requested_at"; whoever publishes deletes it, and the
periodic job ``control_plane.runtimes.tasks.publish_pending`` publishes what is left.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.kit.db import Base


class RuntimeConfigOutbox(Base):
    __tablename__ = "runtime_config_outbox"

    # No foreign key: a deleted tenant's request must survive the delete, so its runtime is removed too.
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
