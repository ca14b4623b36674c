"""Security operations (issue 14): scans and check results, findings with their lifecycle and
risk acceptances, access review campaigns, just-in-time privileged access, Sigma detection hits
and chain-of-custody records, owned by opsbook.secops (and its modules).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # One run of the check catalogue, a vulnerability scan, an import or a detection pass.
    op.create_table(
        "security_scans",
        sa.Column("id", sa.Text(), primary_key=True),  # sc-<12 hex>
        sa.Column("kind", sa.Text(), nullable=False),  # checks | pip-audit | import | detection
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),  # daily | cli | file name | ...
        sa.Column("complete", sa.Integer(), nullable=False),  # 1: absent findings are fixed
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),  # JSON
    )
    op.create_index("ix_security_scans_started", "security_scans", ["started_at"])
    # Each check's result in a scan: the compliance report reads these over a period.
    op.create_table(
        "security_results",
        sa.Column("scan_id", sa.Text(), sa.ForeignKey("security_scans.id"), nullable=False),
        sa.Column("check_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),  # pass | fail | error | skipped
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),  # JSON: evidence, redacted
        sa.PrimaryKeyConstraint("scan_id", "check_id"),
    )
    op.create_index("ix_security_results_check", "security_results", ["check_id"])
    op.create_table(
        "security_findings",
        sa.Column("id", _ID, primary_key=True),  # shown as FND-<id>
        sa.Column("fingerprint", sa.Text(), nullable=False, unique=True),
        sa.Column("source", sa.Text(), nullable=False),  # check | pip-audit | import | detection
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),  # critical | high | medium | low | info
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),  # file:line, package@version, ...
        sa.Column("detail", sa.Text(), nullable=False),  # JSON
        sa.Column("requirements", sa.Text(), nullable=False),  # JSON list of PCI DSS ids
        sa.Column("state", sa.Text(), nullable=False),  # open | accepted | fixed
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("due_at", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.Text(), nullable=False),
        sa.Column("last_seen", sa.Text(), nullable=False),
        sa.Column("last_scan", sa.Text(), nullable=False),
        sa.Column("fixed_at", sa.Text(), nullable=True),
        sa.Column("reintroduced", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("overdue_alerted_at", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
    )
    op.create_index("ix_security_findings_state", "security_findings", ["state", "due_at"])
    op.create_table(
        "security_acceptances",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("finding_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=True),
        sa.Column("approved_at", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),  # pending | approved | expired | withdrawn
    )
    op.create_index("ix_security_acceptances_finding", "security_acceptances", ["finding_id"])
    op.create_table(
        "access_campaigns",
        sa.Column("id", _ID, primary_key=True),  # shown as AR-<id>
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),  # open | closed
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("due_at", sa.Text(), nullable=False),
        sa.Column("closed_by", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),  # JSON summary at close
    )
    op.create_table(
        "access_review_items",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),  # opsbook-role | opsbook-token | db-role |
        #                                                 k8s-binding | azure-assignment
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("grant_name", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),  # where the grant was read
        sa.Column("detail", sa.Text(), nullable=False),  # JSON: last use, granted by, ...
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=True),  # keep | revoke
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.Text(), nullable=True),
        sa.Column("apply_result", sa.Text(), nullable=True),
    )
    op.create_index("ix_access_review_items_campaign", "access_review_items", ["campaign_id"])
    op.create_table(
        "jit_grants",
        sa.Column("id", _ID, primary_key=True),  # shown as JIT-<id>
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),  # pending|active|expired|revoked|rejected
        sa.Column("requested_at", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=True),
        sa.Column("approved_at", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Text(), nullable=True),
        sa.Column("ended_at", sa.Text(), nullable=True),
        sa.Column("ended_by", sa.Text(), nullable=True),
    )
    op.create_index("ix_jit_grants_user", "jit_grants", ["username", "state"])
    op.create_table(
        "security_detection_hits",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),  # e.g. the source address
        sa.Column("window_start", sa.Text(), nullable=False),
        sa.Column("first_ts", sa.Text(), nullable=False),
        sa.Column("last_ts", sa.Text(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("sample", sa.Text(), nullable=False),  # JSON, redacted
        sa.Column("alert", sa.Text(), nullable=True),  # the alert raised for it
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.UniqueConstraint("rule_id", "environment", "group_key", "window_start"),
    )
    op.create_table(
        "custody_records",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),  # forensic-snapshot | ...
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),  # of the manifest
        sa.Column("manifest", sa.Text(), nullable=False),  # JSON: each file and its digest
        sa.Column("taken_by", sa.Text(), nullable=False),
        sa.Column("taken_at", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=True),
        sa.Column("ticket", sa.Text(), nullable=True),
        sa.Column("handoffs", sa.Text(), nullable=False, server_default="[]"),  # JSON
    )


def downgrade() -> None:
    for table in (
        "custody_records",
        "security_detection_hits",
        "jit_grants",
        "access_review_items",
        "access_campaigns",
        "security_acceptances",
        "security_findings",
        "security_results",
        "security_scans",
    ):
        op.drop_table(table)
