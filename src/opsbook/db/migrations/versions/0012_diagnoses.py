"""Diagnoses (issue 12): each `opsbook diagnose` answer, kept for the incident and alert it was
made for, owned by opsbook.troubleshoot.store.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "diagnoses",
        sa.Column("id", sa.Text(), primary_key=True),  # dg-<12 hex>
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=True),
        sa.Column("alert", sa.Text(), nullable=True),
        sa.Column("incident", sa.Text(), nullable=True),
        sa.Column("top_cause", sa.Text(), nullable=True),
        sa.Column("top_service", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),  # the diagnosis JSON
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
    )
    op.create_index("ix_diagnoses_incident", "diagnoses", ["incident", "created_at"])
    op.create_index("ix_diagnoses_alert", "diagnoses", ["alert", "created_at"])
    op.create_index("ix_diagnoses_created", "diagnoses", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_diagnoses_created", "diagnoses")
    op.drop_index("ix_diagnoses_alert", "diagnoses")
    op.drop_index("ix_diagnoses_incident", "diagnoses")
    op.drop_table("diagnoses")
