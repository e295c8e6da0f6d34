"""Outbox emails: SMTP delivery retries (next_attempt_at, attempts, last_error)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox_emails", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox_emails", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.add_column("outbox_emails", sa.Column("last_error", sa.Text(), nullable=True))
    op.create_index(op.f("ix_outbox_emails_next_attempt_at"), "outbox_emails", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_emails_next_attempt_at"), table_name="outbox_emails")
    op.drop_column("outbox_emails", "last_error")
    op.drop_column("outbox_emails", "attempts")
    op.drop_column("outbox_emails", "next_attempt_at")
