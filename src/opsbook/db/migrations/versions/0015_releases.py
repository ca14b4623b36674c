"""Releases and their change records (issue 11): each deployment of a service version to an
environment, its ticket, reason, security impact, back-out plan, testing evidence, the
rollout's decisions and outcome; owned by opsbook.deploy.records.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Text(), primary_key=True),  # rel-<stamp>-<hex>
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),  # production | staging
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("previous_version", sa.Text(), nullable=True),
        sa.Column("strategy", sa.Text(), nullable=False),
        sa.Column("ticket", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("security_impact", sa.Text(), nullable=False),
        sa.Column("backout", sa.Text(), nullable=False),
        sa.Column("emergency", sa.Integer(), nullable=False, server_default="0"),
        # requested | running | promoted | aborted | rolled_back | failed | refused | cancelled
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.Text(), nullable=True),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),  # JSON: testing evidence found
        sa.Column("freeze", sa.Text(), nullable=True),  # JSON: the freeze window met, if any
        sa.Column("rollout", sa.Text(), nullable=True),  # JSON: decisions and outcome
        sa.Column("lead_started_at", sa.Text(), nullable=True),
        sa.Column("rolled_back_at", sa.Text(), nullable=True),
        sa.Column("restored_at", sa.Text(), nullable=True),
        sa.Column("rollback_execution_id", sa.Text(), nullable=True),
        sa.Column("incident_ids", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("detail", sa.Text(), nullable=True),  # why refused / failed
    )
    op.create_index("ix_releases_service", "releases", ["environment", "service", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_releases_service", "releases")
    op.drop_table("releases")
