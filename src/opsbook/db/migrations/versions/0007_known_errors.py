"""Known errors (issue 12): the ``known_errors`` table, owned by opsbook.troubleshoot.known_errors.

Reserved in the chain first so that parallel work could add its migrations in order.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the tables are added by the change that owns them


def downgrade() -> None:
    pass
