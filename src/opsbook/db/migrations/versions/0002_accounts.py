"""Schema for accounts, sessions, API tokens (web console and REST API issue).

Also the index the API's newest-first execution listing pages through, and the claim table
that lets several server replicas agree on who starts a scheduled procedure.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("username", sa.Text(), nullable=False, unique=True),
        sa.Column("display_name", sa.Text(), nullable=False, server_default=""),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),  # NULL: single sign-on only
        sa.Column("source", sa.Text(), nullable=False, server_default="local"),
        sa.Column("disabled", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("last_login_at", sa.Text(), nullable=True),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "role"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Text(), primary_key=True),  # public part, shown in lists
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),  # SHA-256 of the secret part
        sa.Column("scopes", sa.Text(), nullable=False),  # JSON list
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
        sa.Column("last_used_at", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user_id"])
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.Text(), primary_key=True),  # SHA-256 of the cookie value
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),  # password | oidc
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),  # absolute lifetime
        sa.Column("last_seen_at", sa.Text(), nullable=False),  # idle timeout counts from here
    )
    op.create_index("ix_sessions_user", "sessions", ["user_id"])
    # Pending single sign-on logins: state, nonce and PKCE verifier, used once.
    op.create_table(
        "auth_states",
        sa.Column("state", sa.Text(), primary_key=True),
        sa.Column("nonce", sa.Text(), nullable=False),
        sa.Column("code_verifier", sa.Text(), nullable=False),
        sa.Column("next_url", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
    )
    # One row per (procedure, due time): the replica that inserts it starts the run.
    op.create_table(
        "schedule_claims",
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("due_at", sa.Text(), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("ref", "due_at"),
    )
    # Newest-first listing with keyset pagination (GET /api/v1/executions).
    op.create_index("ix_executions_created", "executions", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_executions_created", table_name="executions")
    op.drop_table("schedule_claims")
    op.drop_table("auth_states")
    op.drop_table("sessions")
    op.drop_table("api_tokens")
    op.drop_table("user_roles")
    op.drop_table("users")
