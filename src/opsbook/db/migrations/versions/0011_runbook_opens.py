"""Runbook opens (issue 15, runbook metrics: "how often it is opened"): one row each time a
person opens a runbook or a procedure (console page, API read, `opsbook runbooks show`), owned
by opsbook.lifecycle.opens.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runbook_opens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("runbook_id", sa.Text(), nullable=False),
        sa.Column("procedure_id", sa.Text(), nullable=True),  # null: the whole runbook
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),  # console | api | cli
        sa.Column("opened_at", sa.Text(), nullable=False),
    )
    op.create_index("ix_runbook_opens_at", "runbook_opens", ["opened_at", "runbook_id"])


def downgrade() -> None:
    op.drop_index("ix_runbook_opens_at", "runbook_opens")
    op.drop_table("runbook_opens")
