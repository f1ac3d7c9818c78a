"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 06:52:25.845180
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum(
                "running",
                "succeeded",
                "partial",
                "failed",
                name="cycle_outcome",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycles")),
    )
    op.create_index(op.f("ix_cycles_started_at"), "cycles", ["started_at"], unique=False)
    op.create_table(
        "cycle_stats",
        sa.Column("cycle_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "login",
                "firewall",
                "patch",
                name="event_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("generated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("analysed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("dispatch_seconds", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["cycles.id"], name=op.f("fk_cycle_stats_cycle_id_cycles"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("cycle_id", "kind", name=op.f("pk_cycle_stats")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("uid", sa.UUID(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "login",
                "firewall",
                "patch",
                name="event_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("cycle_id", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "analysed",
                "failed",
                name="event_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("delivery_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("delivery_count >= 0", name=op.f("ck_events_delivery_count_non_negative")),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycles.id"], name=op.f("fk_events_cycle_id_cycles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("uid", name=op.f("uq_events_uid")),
    )
    op.create_index("ix_events_cycle_id_status", "events", ["cycle_id", "status"], unique=False)
    op.create_index("ix_events_kind_occurred_at", "events", ["kind", "occurred_at"], unique=False)
    op.create_index(op.f("ix_events_occurred_at"), "events", ["occurred_at"], unique=False)
    op.create_table(
        "event_analyses",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "severity",
            sa.Enum(
                "low",
                "medium",
                "high",
                "critical",
                name="severity",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("analysed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("score BETWEEN 0 AND 100", name=op.f("ck_event_analyses_score_range")),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_event_analyses_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_analyses")),
        sa.UniqueConstraint("event_id", name=op.f("uq_event_analyses_event_id")),
    )
    op.create_index(op.f("ix_event_analyses_severity"), "event_analyses", ["severity"], unique=False)
    op.create_table(
        "firewall_events",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("src_ip", postgresql.INET(), nullable=False),
        sa.Column("src_port", sa.Integer(), nullable=False),
        sa.Column("dst_ip", postgresql.INET(), nullable=False),
        sa.Column("dst_port", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("rule_name", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_firewall_events_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_firewall_events")),
    )
    op.create_index(op.f("ix_firewall_events_action"), "firewall_events", ["action"], unique=False)
    op.create_index(op.f("ix_firewall_events_dst_ip"), "firewall_events", ["dst_ip"], unique=False)
    op.create_index(op.f("ix_firewall_events_dst_port"), "firewall_events", ["dst_port"], unique=False)
    op.create_index(op.f("ix_firewall_events_src_ip"), "firewall_events", ["src_ip"], unique=False)
    op.create_table(
        "ground_truth",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("scenario", sa.String(length=32), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_ground_truth_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ground_truth")),
    )
    op.create_index(op.f("ix_ground_truth_scenario"), "ground_truth", ["scenario"], unique=False)
    op.create_table(
        "login_events",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("privileged", sa.Boolean(), nullable=False),
        sa.Column("src_ip", postgresql.INET(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("auth_method", sa.String(length=32), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_login_events_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_login_events")),
    )
    op.create_index(op.f("ix_login_events_src_ip"), "login_events", ["src_ip"], unique=False)
    op.create_index(op.f("ix_login_events_username"), "login_events", ["username"], unique=False)
    op.create_table(
        "patch_events",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("package", sa.String(length=64), nullable=False),
        sa.Column("installed_version", sa.String(length=32), nullable=False),
        sa.Column("fixed_version", sa.String(length=32), nullable=False),
        sa.Column("cve_id", sa.String(length=20), nullable=False),
        sa.Column("cvss", sa.Numeric(precision=3, scale=1, asdecimal=False), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_patch_events_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_patch_events")),
    )
    op.create_index(op.f("ix_patch_events_cve_id"), "patch_events", ["cve_id"], unique=False)
    op.create_index(op.f("ix_patch_events_host"), "patch_events", ["host"], unique=False)
    op.create_index(op.f("ix_patch_events_state"), "patch_events", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_patch_events_state"), table_name="patch_events")
    op.drop_index(op.f("ix_patch_events_host"), table_name="patch_events")
    op.drop_index(op.f("ix_patch_events_cve_id"), table_name="patch_events")
    op.drop_table("patch_events")
    op.drop_index(op.f("ix_login_events_username"), table_name="login_events")
    op.drop_index(op.f("ix_login_events_src_ip"), table_name="login_events")
    op.drop_table("login_events")
    op.drop_index(op.f("ix_ground_truth_scenario"), table_name="ground_truth")
    op.drop_table("ground_truth")
    op.drop_index(op.f("ix_firewall_events_src_ip"), table_name="firewall_events")
    op.drop_index(op.f("ix_firewall_events_dst_port"), table_name="firewall_events")
    op.drop_index(op.f("ix_firewall_events_dst_ip"), table_name="firewall_events")
    op.drop_index(op.f("ix_firewall_events_action"), table_name="firewall_events")
    op.drop_table("firewall_events")
    op.drop_index(op.f("ix_event_analyses_severity"), table_name="event_analyses")
    op.drop_table("event_analyses")
    op.drop_index(op.f("ix_events_occurred_at"), table_name="events")
    op.drop_index("ix_events_kind_occurred_at", table_name="events")
    op.drop_index("ix_events_cycle_id_status", table_name="events")
    op.drop_table("events")
    op.drop_table("cycle_stats")
    op.drop_index(op.f("ix_cycles_started_at"), table_name="cycles")
    op.drop_table("cycles")
