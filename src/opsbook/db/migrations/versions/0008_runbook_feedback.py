"""Runbook feedback (issue 15): a 1–5 rating and a comment per execution and person, owned by
opsbook.lifecycle.feedback.

Reserved in the chain first so that parallel work could add its migrations in order.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runbook_feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        # no foreign key, as incident_executions: executions may be pruned, feedback stays
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),  # 1..5
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.UniqueConstraint("execution_id", "person"),
    )
    op.create_index("ix_runbook_feedback_comment", "runbook_feedback", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_runbook_feedback_comment", "runbook_feedback")
    op.drop_table("runbook_feedback")
