"""Diagnoses (issue 12): the ``diagnoses`` table, owned by opsbook.troubleshoot.store.

Reserved in the chain first so that parallel work could add its migrations in order; the
tables are created by the code that owns them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the tables are added by the change that owns them


def downgrade() -> None:
    pass
