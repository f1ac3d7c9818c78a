"""Cycle scorecards kept beside the ledger

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 23:55:00

Each cycle's scorecard counts (scoring.to_stored): per scenario and kind, answered, flagged, failed and pending
events; each campaign's first event and first flagged one; answered events per score. Like cycle_stats, they
outlive the events retention prunes, so `cyberevents score` still answers for old cycles.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cycle_scores",
        sa.Column("cycle_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "threshold",
            sa.Enum("low", "medium", "high", "critical", name="score_threshold", native_enum=False,
                    create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("agent_label", sa.Text(), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["cycles.id"], name=op.f("fk_cycle_scores_cycle_id_cycles"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("cycle_id", name=op.f("pk_cycle_scores")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("cycle_scores")
