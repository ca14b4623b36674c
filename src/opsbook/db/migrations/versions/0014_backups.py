"""The backup catalogue (issue 13, first slice): each backup of the ledger with where its copies
live, its checksums and manifest, and its verification by restore; owned by opsbook.backup.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.Text(), primary_key=True),  # bk-<stamp>-<hex>
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("database", sa.Text(), nullable=False),  # ledger
        sa.Column("method", sa.Text(), nullable=False),  # sqlite-online-backup
        sa.Column("state", sa.Text(), nullable=False),  # ok | bad
        sa.Column("retention", sa.Text(), nullable=False),  # daily | weekly | monthly
        sa.Column("started_at", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("raw_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),  # of the stored (encrypted) file
        sa.Column("key_id", sa.Text(), nullable=False),  # which key, never the key
        sa.Column("manifest", sa.Text(), nullable=False),  # JSON: row counts, last ids
        sa.Column("copies", sa.Text(), nullable=False),  # JSON: [{location, path}]
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("verified_at", sa.Text(), nullable=True),
        sa.Column("verify_ok", sa.Integer(), nullable=True),
        sa.Column("verify_duration_s", sa.Float(), nullable=True),
        sa.Column("verify_result", sa.Text(), nullable=True),  # JSON
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_backups_env_started", "backups", ["environment", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_backups_env_started", "backups")
    op.drop_table("backups")
