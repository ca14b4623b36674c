"""Runbook opens (issue 15, runbook metrics: "how often it is opened"): one row each time a
person opens a runbook or a procedure (console page, API read, `opsbook runbooks show`), owned
by opsbook.lifecycle.opens.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _catch_up() -> None:
    """0007 (known errors) and 0010 (training) were empty placeholders in the release before
    this one and were filled since: a database that ran them empty gets their tables here."""
    import importlib.util  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    tables = set(sa.inspect(op.get_bind()).get_table_names())
    for name, table in (
        ("0007_known_errors.py", "known_errors"),
        ("0010_training.py", "training_onboarding"),
    ):
        if table in tables:
            continue
        spec = importlib.util.spec_from_file_location(
            f"_catch_up_{table}", Path(__file__).with_name(name)
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.upgrade()


def upgrade() -> None:
    _catch_up()
    op.create_table(
        "runbook_opens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("runbook_id", sa.Text(), nullable=False),
        sa.Column("procedure_id", sa.Text(), nullable=True),  # null: the whole runbook
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),  # console | api | cli
        sa.Column("opened_at", sa.Text(), nullable=False),
    )
    op.create_index("ix_runbook_opens_at", "runbook_opens", ["opened_at", "runbook_id"])


def downgrade() -> None:
    op.drop_index("ix_runbook_opens_at", "runbook_opens")
    op.drop_table("runbook_opens")
