"""events fillfactor 80: claims update their rows in place

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 18:40:00

A claim sets only the lease columns, which no index covers; with free space on the row's page PostgreSQL
writes the new version there (a HOT update) and touches none of the table's six indexes. Only pages written
from now on keep the space; existing rows are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE events SET (fillfactor = 80)")


def downgrade() -> None:
    op.execute("ALTER TABLE events RESET (fillfactor)")
