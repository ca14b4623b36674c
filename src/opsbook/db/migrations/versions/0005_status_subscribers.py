"""Status page subscribers with double opt-in (issue 16 §4).

``status_subscribers`` holds one row per address: ``pending`` until the signed link in the
confirmation mail is followed (then ``confirmed``), with the client address that asked (for the
per-client cap) and when an unconfirmed entry expires. Only confirmed addresses get updates.

Subscriptions were ``notifications`` rows (``kind = 'subscription'``, ``state = 'active'``);
they move here as confirmed (they were accepted under the old single opt-in, and dropping them
would silently stop updates to real customers) and leave ``notifications``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "status_subscribers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False, unique=True),
        sa.Column("state", sa.Text(), nullable=False),  # pending | confirmed
        sa.Column("client", sa.Text(), nullable=False),  # the remote address that asked
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("mailed_at", sa.Text(), nullable=True),  # last confirmation mail queued
        sa.Column("expires_at", sa.Text(), nullable=True),  # pending only
        sa.Column("confirmed_at", sa.Text(), nullable=True),
    )
    op.create_index("ix_status_subscribers_state", "status_subscribers", ["state", "created_at"])
    op.create_index("ix_status_subscribers_client", "status_subscribers", ["client", "state"])
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT recipient, created_at FROM notifications"
            " WHERE kind = 'subscription' AND state = 'active' ORDER BY id"
        )
    ).fetchall()
    seen: set[str] = set()
    moved = []
    for recipient, created_at in rows:
        try:
            email = str(json.loads(recipient)["name"]).strip().lower()
        except (ValueError, KeyError, TypeError):
            continue
        if email and email not in seen:
            seen.add(email)
            moved.append(
                {
                    "email": email,
                    "state": "confirmed",
                    "client": "migrated",
                    "created_at": created_at,
                    "confirmed_at": created_at,
                }
            )
    if moved:
        op.bulk_insert(table, moved)
    bind.execute(
        sa.text("DELETE FROM notifications WHERE kind = 'subscription' AND state = 'active'")
    )


def downgrade() -> None:
    op.drop_index("ix_status_subscribers_client", table_name="status_subscribers")
    op.drop_index("ix_status_subscribers_state", table_name="status_subscribers")
    op.drop_table("status_subscribers")
