"""Training and certification (issue 15): onboarding, assessments, drills, certifications,
owned by opsbook.lifecycle.training.

Reserved in the chain first so that parallel work could add its migrations in order.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the tables are added by the change that owns them


def downgrade() -> None:
    pass
