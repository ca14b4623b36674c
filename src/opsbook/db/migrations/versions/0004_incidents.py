"""Schema for incidents, timeline, escalation timers, notifications (incident response issue).

Timestamps are ISO 8601 UTC text with microseconds (``2026-11-26T23:40:00.000000Z``), the
format the rest of the schema uses; they sort as text, so due timers are found with ``<=``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _incident_fk(nullable: bool = False) -> sa.Column[int]:
    return sa.Column(
        "incident_id", sa.BigInteger(), sa.ForeignKey("incidents.id"), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "incidents",
        _id(),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("services", sa.Text(), nullable=False),  # JSON list
        sa.Column("impact", sa.Text(), nullable=True),
        sa.Column("urgency", sa.Text(), nullable=True),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False, server_default=""),
        sa.Column("drill", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("source", sa.Text(), nullable=False, server_default="cli"),
        sa.Column("alert_key", sa.Text(), nullable=True),
        sa.Column("roles", sa.Text(), nullable=False, server_default="{}"),  # JSON
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("impact_start_at", sa.Text(), nullable=True),
        sa.Column("detected_at", sa.Text(), nullable=False),
        sa.Column("declared_at", sa.Text(), nullable=False),
        sa.Column("acknowledged_at", sa.Text(), nullable=True),
        sa.Column("acknowledged_by", sa.Text(), nullable=True),
        sa.Column("mitigated_at", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pending_severity", sa.Text(), nullable=True),
        sa.Column("pending_by", sa.Text(), nullable=True),
        sa.Column("pending_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_incidents_status", "incidents", ["status", "declared_at"])
    op.create_index("ix_incidents_alert", "incidents", ["alert_key"])
    op.create_table(
        "incident_events",
        _id(),
        _incident_fk(),
        sa.Column("ts", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),  # JSON
    )
    op.create_index("ix_incident_events", "incident_events", ["incident_id", "id"])
    op.create_table(
        "incident_timers",
        _id(),
        _incident_fk(),
        sa.Column("kind", sa.Text(), nullable=False),  # escalate | update_reminder
        sa.Column("due_at", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("state", sa.Text(), nullable=False),  # pending | fired | cancelled
        sa.Column("fired_by", sa.Text(), nullable=True),
        sa.Column("fired_at", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
    )
    op.create_index("ix_incident_timers_due", "incident_timers", ["state", "due_at"])
    op.create_index("ix_incident_timers_incident", "incident_timers", ["incident_id", "state"])
    op.create_table(
        "notifications",
        _id(),
        _incident_fk(nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),  # page | test | update
        sa.Column("level", sa.Text(), nullable=True),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),  # JSON: subject, text, links
        sa.Column("state", sa.Text(), nullable=False),  # pending|sending|sent|failed|unknown
        sa.Column("channel", sa.Text(), nullable=True),  # the channel that delivered it
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.Text(), nullable=True),
    )
    op.create_index("ix_notifications_state", "notifications", ["state", "id"])
    op.create_table(
        "notification_attempts",
        _id(),
        sa.Column(
            "notification_id", sa.BigInteger(), sa.ForeignKey("notifications.id"), nullable=False
        ),
        sa.Column("ts", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),  # sent | failed
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_notification_attempts", "notification_attempts", ["notification_id"])
    op.create_table(
        "incident_executions",
        _incident_fk(),
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("started_by", sa.Text(), nullable=False),
        sa.Column("ts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "execution_id"),
    )
    op.create_table(
        "incident_actions",
        _id(),
        _incident_fk(),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("due_date", sa.Text(), nullable=False),  # YYYY-MM-DD
        sa.Column("status", sa.Text(), nullable=False),  # open | done
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("done_at", sa.Text(), nullable=True),
    )
    op.create_table(
        "status_updates",
        _id(),
        _incident_fk(),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),  # internal | public
        sa.Column("state", sa.Text(), nullable=False),  # pending | published
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=True),
        sa.Column("published_at", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    for table in (
        "status_updates",
        "incident_actions",
        "incident_executions",
        "notification_attempts",
        "notifications",
        "incident_timers",
        "incident_events",
    ):
        op.drop_table(table)
    op.drop_index("ix_incidents_alert", "incidents")
    op.drop_index("ix_incidents_status", "incidents")
    op.drop_table("incidents")
