"""Each attack event's form in its ground truth: evident or subtle

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:45:00

Every scenario now comes in two forms: an evident one, which a marker in one field gives away (a foreign country,
a scripted user agent, a CVSS of 9 or more), and a subtle one, which no single field does. The scorecard splits
recall by form. Ground truth stored before this change knew only the evident forms, so it is migrated as such.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ground_truth",
        sa.Column(
            "difficulty",
            sa.Enum("evident", "subtle", name="difficulty", native_enum=False, create_constraint=True, length=16),
            server_default="evident",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_ground_truth_difficulty"), "ground_truth", type_="check")
    op.drop_column("ground_truth", "difficulty")
