"""Deliveries counted as the agent answered them; claims name their owner's liveness lock

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 20:30:00

`delivery_count` counted claims, the batch claimed ahead included, and a crash skipped the release that took them
back: events ended pending at MAX_ATTEMPTS, which no claim takes and `requeue` did not reach. It now counts the
deliveries whose outcome was recorded. A claim its owner never finished, the owner having died, is counted apart in
`lost_deliveries` when the claim is taken over, and `lease_lock` names the owner's session advisory lock, so that a
dead owner's claims are taken over at once. Existing pending events' counts were such lost claims: they move, but
for a claim still leased, which the next claim counts as lost when it takes it over.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("lost_deliveries", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("events", sa.Column("lease_lock", sa.Integer(), nullable=True))
    op.create_check_constraint("lost_deliveries_non_negative", "events", "lost_deliveries >= 0")
    op.execute(
        "UPDATE events SET lost_deliveries = greatest(delivery_count - (lease_owner IS NOT NULL)::int, 0), "
        "delivery_count = 0 WHERE status = 'pending' AND delivery_count > 0"
    )


def downgrade() -> None:
    # Claims counted again, as they were: lost ones, and the one a lease still stands for.
    op.execute(
        "UPDATE events SET delivery_count = delivery_count + lost_deliveries + "
        "(status = 'pending' AND lease_owner IS NOT NULL)::int"
    )
    op.drop_constraint("lost_deliveries_non_negative", "events", type_="check")
    op.drop_column("events", "lease_lock")
    op.drop_column("events", "lost_deliveries")
