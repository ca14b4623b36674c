"""Runbook feedback (issue 15): ratings and comments after runs, owned by opsbook.lifecycle.

Reserved in the chain first so that parallel work could add its migrations in order.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the tables are added by the change that owns them


def downgrade() -> None:
    pass
