"""Abuse log: event_id of the runtime event a channel's guardrail refusal came from (unique, for idempotency)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("abuse_log", sa.Column("event_id", sa.String(length=120), nullable=True))
    op.create_unique_constraint(op.f("uq_abuse_log_event_id"), "abuse_log", ["event_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_abuse_log_event_id"), "abuse_log", type_="unique")
    op.drop_column("abuse_log", "event_id")
