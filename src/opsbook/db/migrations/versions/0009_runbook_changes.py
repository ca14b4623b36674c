"""Runbook change management (issue 15): proposals, reviews, publications, owned by
opsbook.lifecycle.changes.

Reserved in the chain first so that parallel work could add its migrations in order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the tables are added by the change that owns them


def downgrade() -> None:
    pass
