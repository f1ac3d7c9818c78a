"""attempts per event and the dead-letter status

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 07:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("pending", "analysed", "failed")
NEW_STATUSES = (*OLD_STATUSES, "dead_lettered")


def _status_check(values: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_events_event_status"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_event_status"), "events", sa.column("status").in_(values))


def upgrade() -> None:
    op.add_column("events", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
    _status_check(NEW_STATUSES)


def downgrade() -> None:
    op.execute("UPDATE events SET status = 'failed' WHERE status = 'dead_lettered'")
    _status_check(OLD_STATUSES)
    op.drop_column("events", "attempts")
