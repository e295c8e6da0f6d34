"""Column helpers shared by the models: tenant ownership and common enums."""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, declared_attr, mapped_column


class Role(enum.StrEnum):
    owner = "owner"
    editor = "editor"
    viewer = "viewer"


class TenantScoped:
    """Mixin for every row that belongs to one tenant; the tenant scoping layer filters on this column."""

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
