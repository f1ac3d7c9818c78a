"""dispatch leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 07:02:46.086819
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("lease_owner", sa.String(length=128), nullable=True))
    op.add_column("events", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_events_pending", "events", ["cycle_id", "id"], unique=False, postgresql_where=sa.text("status = 'pending'")
    )


def downgrade() -> None:
    op.drop_index("ix_events_pending", table_name="events", postgresql_where=sa.text("status = 'pending'"))
    op.drop_column("events", "lease_expires_at")
    op.drop_column("events", "lease_owner")
