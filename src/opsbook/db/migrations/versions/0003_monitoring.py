"""Schema for probes, probe results, alerts, silences, SLOs (system monitoring issue).

Probe results are stored compactly: one row per check in ``mon_samples`` (integer times,
kept for a short while) and one row per probe and minute in ``mon_rollups`` (kept for the SLA
history). See docs/monitoring.md.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "mon_probes",
        _id(),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.UniqueConstraint("environment", "name"),
    )
    op.create_table(
        "mon_samples",
        sa.Column("probe_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),  # epoch seconds
        sa.Column("ok", sa.SmallInteger(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),  # only for failures
        sa.PrimaryKeyConstraint("probe_id", "ts"),
    )
    op.create_index("ix_mon_samples_ts", "mon_samples", ["ts"])
    op.create_table(
        "mon_rollups",
        sa.Column("probe_id", sa.Integer(), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),  # epoch minutes
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("lat_sum", sa.BigInteger(), nullable=False),
        sa.Column("lat_max", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("probe_id", "minute"),
    )
    op.create_table(
        "mon_alerts",
        _id(),
        sa.Column("fingerprint", sa.Text(), nullable=False, unique=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("alertname", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=True),
        sa.Column("environment", sa.Text(), nullable=True),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("annotations", sa.Text(), nullable=False),
        sa.Column("runbook", sa.Text(), nullable=True),
        sa.Column("starts_at", sa.Text(), nullable=False),
        sa.Column("ends_at", sa.Text(), nullable=True),
        sa.Column("first_received", sa.Text(), nullable=False),
        sa.Column("last_received", sa.Text(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("acked_by", sa.Text(), nullable=True),
        sa.Column("acked_at", sa.Text(), nullable=True),
        sa.Column("ack_comment", sa.Text(), nullable=True),
        sa.Column("escalated_level", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("escalated_at", sa.Text(), nullable=True),
    )
    op.create_index("ix_mon_alerts_status", "mon_alerts", ["status", "starts_at"])
    op.create_table(
        "mon_silences",
        _id(),
        sa.Column("matchers", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.Text(), nullable=False),
        sa.Column("ends_at", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
    )
    op.create_table(
        "mon_kpis",
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("kpi", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("environment", "service", "kpi", "ts"),
    )
    op.create_table(
        "mon_health_reports",
        sa.Column("execution_id", sa.Text(), primary_key=True),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "mon_health_reports",
        "mon_kpis",
        "mon_silences",
        "mon_alerts",
        "mon_rollups",
        "mon_samples",
        "mon_probes",
    ):
        op.drop_table(table)
