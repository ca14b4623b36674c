"""Scale-out (issue 17, ADR 0017): dispatch and claim columns on executions, and the workers
table (every `opsbook worker` and replicated `opsbook serve`, with its heartbeat on the database
clock); owned by opsbook.cluster.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("queue", sa.Text(), nullable=True))  # NULL: in-process run
        batch.add_column(sa.Column("dispatch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("claimed_dispatch", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("claimed_by", sa.Text(), nullable=True))
        batch.add_column(sa.Column("dispatched_at", sa.Text(), nullable=True))
    op.create_index(
        "ix_executions_unclaimed",
        "executions",
        ["dispatched_at"],
        sqlite_where=sa.text("claimed_dispatch < dispatch"),
        postgresql_where=sa.text("claimed_dispatch < dispatch"),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Text(), primary_key=True),  # owner token host:pid:start
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),  # worker | serve
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.Text(), nullable=False, server_default="[]"),  # JSON list
        sa.Column("concurrency", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("version", sa.Text(), nullable=False, server_default=""),
        sa.Column("started_at", sa.Text(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),  # epoch s, database clock
        sa.Column("lease_seconds", sa.Float(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),  # alive | draining | stopped | dead
        sa.Column("ended_at", sa.Text(), nullable=True),
        sa.Column("ended_by", sa.Text(), nullable=True),
    )
    op.create_index("ix_workers_state", "workers", ["state", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_state", "workers")
    op.drop_table("workers")
    op.drop_index("ix_executions_unclaimed", "executions")
    with op.batch_alter_table("executions") as batch:
        for column in ("dispatched_at", "claimed_by", "claimed_dispatch", "dispatch", "queue"):
            batch.drop_column(column)
