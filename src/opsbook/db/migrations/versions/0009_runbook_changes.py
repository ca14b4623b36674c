"""Runbook change management (issue 15): proposals, reviews, publications, owned by
opsbook.lifecycle.changes.

- ``runbook_changes``: one proposal per row — the runbook file's text and SHA-256 as proposed
  (the digest executions record as ``runbook_hash``), the reason (the identified need), its
  state (``draft`` → ``reviewed`` → ``tested`` → ``approved`` → ``published`` → ``trained``, or
  ``rejected``/``withdrawn``), the test evidence (an execution id), who approved and published
  it and the git commit and tag of its publication.
- ``runbook_change_reviews``: the technical and the operational review (one of each kind).
- ``runbook_change_acks``: who was informed of / trained on a published change.
- ``runbook_publications``: every published version (runbook id, version, digest, git commit
  and tag); the production start guard looks digests up here.
- ``runbook_overrides``: emergency overrides for an unpublished digest, valid for a short time
  once someone other than the requester approved them.

Reserved in the chain first so that parallel work could add its migrations in order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _change_fk() -> sa.Column[int]:
    return sa.Column(
        "change_id", sa.BigInteger(), sa.ForeignKey("runbook_changes.id"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "runbook_changes",
        _id(),
        sa.Column("runbook_id", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),  # relative to the workspace root
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),  # published version it changes
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("lint_warnings", sa.Text(), nullable=False, server_default="[]"),  # JSON
        sa.Column("test_execution_id", sa.Text(), nullable=True),
        sa.Column("test_environment", sa.Text(), nullable=True),
        sa.Column("tested_by", sa.Text(), nullable=True),
        sa.Column("tested_at", sa.Text(), nullable=True),
        sa.Column("approved_by", sa.Text(), nullable=True),
        sa.Column("approved_at", sa.Text(), nullable=True),
        sa.Column("published_by", sa.Text(), nullable=True),
        sa.Column("published_at", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("git_commit", sa.Text(), nullable=True),
        sa.Column("git_tag", sa.Text(), nullable=True),
        sa.Column("inform", sa.Text(), nullable=False, server_default="[]"),  # JSON names
        sa.Column("trained_at", sa.Text(), nullable=True),
        sa.Column("closed_reason", sa.Text(), nullable=True),  # rejected / withdrawn: why
    )
    op.create_index("ix_runbook_changes_runbook", "runbook_changes", ["runbook_id", "state"])
    op.create_index("ix_runbook_changes_state", "runbook_changes", ["state", "id"])
    op.create_table(
        "runbook_change_reviews",
        _id(),
        _change_fk(),
        sa.Column("kind", sa.Text(), nullable=False),  # technical | operational
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),  # approved | rejected
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("ts", sa.Text(), nullable=False),
        sa.UniqueConstraint("change_id", "kind", name="uq_runbook_change_review_kind"),
    )
    op.create_table(
        "runbook_change_acks",
        _change_fk(),
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("ts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("change_id", "person"),
    )
    op.create_table(
        "runbook_publications",
        _id(),
        sa.Column("runbook_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),  # relative to the git top level
        sa.Column("git_commit", sa.Text(), nullable=False),
        sa.Column("git_tag", sa.Text(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=True),
        sa.Column("published_by", sa.Text(), nullable=False),
        sa.Column("published_at", sa.Text(), nullable=False),
        sa.UniqueConstraint("runbook_id", "version", name="uq_runbook_publication_version"),
    )
    op.create_index(
        "ix_runbook_publications_digest", "runbook_publications", ["runbook_id", "content_hash"]
    )
    op.create_table(
        "runbook_overrides",
        _id(),
        sa.Column("runbook_id", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),  # requested | approved | rejected
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Text(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index(
        "ix_runbook_overrides_digest", "runbook_overrides", ["runbook_id", "content_hash", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_runbook_overrides_digest", table_name="runbook_overrides")
    op.drop_table("runbook_overrides")
    op.drop_index("ix_runbook_publications_digest", table_name="runbook_publications")
    op.drop_table("runbook_publications")
    op.drop_table("runbook_change_acks")
    op.drop_table("runbook_change_reviews")
    op.drop_index("ix_runbook_changes_state", table_name="runbook_changes")
    op.drop_index("ix_runbook_changes_runbook", table_name="runbook_changes")
    op.drop_table("runbook_changes")
