"""Initial schema: the hash-chained event log, execution and step projections, approvals.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The one append-only log: journal events of executions and every other audited action.
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("ts", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_digest", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
    )
    op.create_index("ix_events_execution", "events", ["execution_id", "id"])
    op.create_index("ix_events_ts", "events", ["ts"])
    # The chain head: serialises writers and detects deletion of the newest records.
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.Text(), nullable=False),
    )
    op.execute("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, '')")

    op.create_table(
        "executions",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("parent_id", sa.Text(), nullable=True),
        sa.Column("runbook_id", sa.Text(), nullable=False),
        sa.Column("runbook_path", sa.Text(), nullable=False),
        sa.Column("runbook_hash", sa.Text(), nullable=False),
        sa.Column("procedure_id", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("state_name", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cursor", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("dry_run", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_by", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("abort_requested", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.Text(), nullable=True),
    )
    op.create_index("ix_executions_state", "executions", ["state"])
    op.create_table(
        "step_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("execution_id", sa.Text(), sa.ForeignKey("executions.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("state_name", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.Text(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        # The process group a running sh step started (pid and its start time), so that a
        # resume after a crash can stop what the dead engine left running.
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pid_started", sa.Float(), nullable=True),
        sa.UniqueConstraint("execution_id", "seq"),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("execution_id", sa.Text(), sa.ForeignKey("executions.id"), nullable=False),
        sa.Column("step_seq", sa.Integer(), nullable=False),
        sa.Column("approver", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.UniqueConstraint("execution_id", "step_seq", "approver"),
    )


def downgrade() -> None:
    op.drop_table("approvals")
    op.drop_table("step_runs")
    op.drop_table("executions")
    op.drop_table("audit_head")
    op.drop_table("events")
