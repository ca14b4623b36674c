"""Training and certification (issue 15): onboarding, assessments, graded drills and
certifications, owned by opsbook.lifecycle.training (and its modules).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "training_onboarding",
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("item", sa.Text(), nullable=False),
        sa.Column("done_at", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("person", "item"),
    )
    op.create_table(
        "training_assessments",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("area", sa.Text(), nullable=False),
        sa.Column("quiz_digest", sa.Text(), nullable=False),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("pass_mark", sa.Float(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),  # JSON: per question, right or wrong
        sa.Column("submitted_at", sa.Text(), nullable=False),
    )
    op.create_index("ix_training_assessments_person", "training_assessments", ["person", "area"])
    op.create_table(
        "training_drills",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("area", sa.Text(), nullable=False),
        sa.Column("trainee", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),  # running | ended
        sa.Column("started_at", sa.Text(), nullable=False),
        sa.Column("started_by", sa.Text(), nullable=False),
        sa.Column("faults", sa.Text(), nullable=False),  # JSON: what was injected
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.Text(), nullable=True),
        sa.Column("scored_at", sa.Text(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("passed", sa.Integer(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),  # JSON: the graded parts
        sa.Column("debrief", sa.Text(), nullable=True),  # Markdown
    )
    op.create_index("ix_training_drills_trainee", "training_drills", ["trainee", "state"])
    op.create_table(
        "training_certifications",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("area", sa.Text(), nullable=False),
        sa.Column("earned_at", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
        sa.Column("assessment_id", sa.BigInteger(), nullable=True),
        sa.Column("drill_id", sa.BigInteger(), nullable=True),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_training_certifications_person", "training_certifications", ["person", "area"]
    )


def downgrade() -> None:
    op.drop_index("ix_training_certifications_person", "training_certifications")
    op.drop_table("training_certifications")
    op.drop_index("ix_training_drills_trainee", "training_drills")
    op.drop_table("training_drills")
    op.drop_index("ix_training_assessments_person", "training_assessments")
    op.drop_table("training_assessments")
    op.drop_table("training_onboarding")
