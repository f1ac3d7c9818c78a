"""ix_events_claimable: what the claims walk, in claim order, for both kinds of claim

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 21:00:00

Replaces ix_events_pending. A cycle's own claims take its pending events; backlog claims take earlier cycles'
leftovers, pending or failed. Both walk this index in (cycle_id, id) order and stop after `limit` rows: own
claims pass a failed event on its index entry (status is a key column), backlog claims need no status test at all
(the index holds nothing else). Before, a backlog claim had no index in its order and read every leftover, or with
statistics every event of the earlier cycles, on each claim.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMABLE = sa.text("status IN ('pending', 'failed')")
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index("ix_events_claimable", "events", ["cycle_id", "id", "status"], postgresql_where=CLAIMABLE)
    op.drop_index("ix_events_pending", table_name="events", postgresql_where=PENDING)


def downgrade() -> None:
    op.create_index("ix_events_pending", "events", ["cycle_id", "id"], postgresql_where=PENDING)
    op.drop_index("ix_events_claimable", table_name="events", postgresql_where=CLAIMABLE)
