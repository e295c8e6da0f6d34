"""Runtime config outbox: publication requests written in the transaction that changed a tenant's config

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runtime_config_outbox",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_runtime_config_outbox")),
    )
    op.create_index(
        op.f("ix_runtime_config_outbox_requested_at"), "runtime_config_outbox", ["requested_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_runtime_config_outbox_requested_at"), table_name="runtime_config_outbox")
    op.drop_table("runtime_config_outbox")
