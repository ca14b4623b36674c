"""Known errors (issue 12): the ``known_errors`` table, owned by opsbook.troubleshoot.known_errors.

A known error is a symptom → cause → fix record: ``symptoms`` is a JSON list of matchers over a
diagnosis' facts and evidence, ``procedure``/``params`` the fix. Made from post-incident review
action items, from diagnoses confirmed by a successful fix, or by hand.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_errors",
        sa.Column("id", sa.Text(), primary_key=True),  # ke-<8 hex>
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=True),
        sa.Column("symptoms", sa.Text(), nullable=False),  # JSON list of matchers
        sa.Column("procedure", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),  # JSON object
        sa.Column("source", sa.Text(), nullable=False),  # review | diagnosis | manual
        sa.Column("source_ref", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_confirmed_at", sa.Text(), nullable=True),
        sa.Column("retired_at", sa.Text(), nullable=True),
    )
    op.create_index("ix_known_errors_cause", "known_errors", ["cause"])


def downgrade() -> None:
    op.drop_index("ix_known_errors_cause", "known_errors")
    op.drop_table("known_errors")
