"""run ledger: schedule slots, triggers and the fates of slots that never ran

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 07:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_OUTCOMES = ("running", "succeeded", "partial", "failed")
NEW_OUTCOMES = (*OLD_OUTCOMES, "coalesced", "missed", "timed_out", "interrupted")
TRIGGERS = ("start", "schedule", "catch_up", "once")


def _outcome_check(values: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_cycles_cycle_outcome"), "cycles", type_="check")
    op.create_check_constraint(op.f("ck_cycles_cycle_outcome"), "cycles", sa.column("outcome").in_(values))


def upgrade() -> None:
    op.add_column("cycles", sa.Column("slot_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "cycles",
        sa.Column(
            "trigger",
            sa.Enum(*TRIGGERS, name="cycle_trigger", native_enum=False, create_constraint=True, length=16),
            server_default="once",
            nullable=False,
        ),
    )
    op.create_unique_constraint(op.f("uq_cycles_slot_at"), "cycles", ["slot_at"])
    op.alter_column("cycles", "seed", existing_type=sa.BigInteger(), nullable=True)
    op.alter_column("cycles", "error", new_column_name="reason")
    _outcome_check(NEW_OUTCOMES)


def downgrade() -> None:
    op.execute("DELETE FROM cycles WHERE seed IS NULL")  # ledger rows of slots that never ran: no events
    op.execute("UPDATE cycles SET outcome = 'failed' WHERE outcome NOT IN ('running', 'succeeded', 'partial')")
    _outcome_check(OLD_OUTCOMES)
    op.alter_column("cycles", "reason", new_column_name="error")
    op.alter_column("cycles", "seed", existing_type=sa.BigInteger(), nullable=False)
    op.drop_constraint(op.f("uq_cycles_slot_at"), "cycles", type_="unique")
    op.drop_column("cycles", "trigger")
